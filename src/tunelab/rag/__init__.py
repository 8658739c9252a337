"""Retrieval-augmented generation: an index of the user's documents, answers grounded in the
chunks retrieved for each question, and the measured comparison of RAG against fine-tuning
(base, base+RAG, tuned, tuned+RAG) on the user's own test set.

Modules: ``documents`` (reading files and folders), ``chunking`` (token windows with overlap),
``index`` (build, save atomically, load), ``embed`` (the offline sentence-transformers model),
``retrieve`` (BM25, dense, hybrid), ``prompt`` (the chat prompt within the context budget),
``answer`` (one question), ``compare`` (the four systems) and ``demo`` (the shipped example).
"""
