"""Data loading, format detection, validation and splitting."""
