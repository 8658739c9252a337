"""Regenerate src/tunelab/resources/prefs_concise.jsonl (the sample preference dataset).

One clear preference: a concise, direct, polite answer (chosen) over a rambling, padded answer
(rejected) to the same everyday question. Both sides state the same facts; the rejected side
wraps them in filler openers, hedging, an echo of the question, an irrelevant aside, the answer
said twice and a long sign-off, drawn from phrase pools by a seeded RNG so the padding varies.
A model tuned on it (DPO and friends) should learn to answer shorter without getting less right.

Every fact below is a question written two ways and one short answer (8-30 words); each
phrasing becomes one prompt, sometimes wrapped in a casual opener or closer.

    python scripts/make_pref_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# topic -> [(question, the same question put another way, short answer)]
FACTS = {
    "cooking": [
        ("How do I keep bananas from ripening too fast?", "My bananas go brown so quickly. How can I slow that down?",
         "Keep them away from other fruit, and once they are ripe, move them to the fridge; the peel darkens but the inside stays good."),
        ("How long should I let bread dough rise?", "How do I know when bread dough has risen enough?",
         "Usually one to two hours in a warm spot, until it roughly doubles in size and a gentle poke springs back slowly."),
        ("How do I clean a cast iron pan?", "What's the right way to wash a cast iron skillet?",
         "Rinse it with hot water and a little soap if needed, dry it completely, then rub in a thin layer of oil."),
        ("How long should I boil an egg for a hard yolk?", "What's the right boiling time for a hard-boiled egg?",
         "About 9 to 12 minutes in boiling water, then cool it in cold water so it is easier to peel."),
        ("How do I keep cut apples from turning brown?", "Is there a way to stop apple slices from browning?",
         "Toss them with a little lemon juice, or soak them briefly in lightly salted water."),
        ("Why should I let meat rest after cooking?", "What is the point of resting a steak before cutting it?",
         "Resting lets the juices settle back into the meat, so less of them run out when you cut it."),
        ("How can I tell if an egg is still fresh?", "Is there an easy test for old eggs?",
         "Put it in a bowl of water. A fresh egg sinks and lies flat, while an old one stands up or floats."),
        ("What is the best way to cook rice on the stove?", "How do I make plain rice in a pot?",
         "Rinse the rice, simmer it covered in about one and a half to two times its volume of water until "
         "absorbed, then let it rest."),
        ("How do I stop pasta from sticking together?", "Why does my spaghetti clump, and how do I prevent it?",
         "Use plenty of boiling water and stir the pasta during the first couple of minutes of cooking."),
        ("How do I soften hard brown sugar?", "My brown sugar turned into a brick. Can I fix it?",
         "Seal it in a container with a slice of bread or an apple wedge overnight; the sugar absorbs the moisture."),
        ("Can I freeze bread?", "Is it okay to keep a loaf of bread in the freezer?",
         "Yes. Wrap it well and freeze it for up to about three months, then thaw it or toast slices from frozen."),
        ("Why do onions make my eyes water?", "What makes people cry when chopping onions?",
         "Cutting an onion releases a sulfur compound that irritates your eyes. A sharp knife and a chilled onion help."),
        ("How do I know when oil is hot enough for frying?", "How can I check frying oil temperature without a thermometer?",
         "Drop in a small cube of bread; if it sizzles and turns golden in about a minute, the oil is ready."),
        ("What can I use instead of buttermilk?", "I ran out of buttermilk for a recipe. What's a substitute?",
         "Stir one tablespoon of lemon juice or vinegar into a cup of milk and let it stand for five minutes."),
        ("How long can cooked leftovers stay in the fridge?", "How many days are leftovers good for?",
         "Most cooked leftovers are safe for about three to four days in the fridge if they were chilled promptly."),
        ("How do I ripen an avocado faster?", "My avocado is rock hard. How can I speed it up?",
         "Put it in a paper bag with a banana or an apple at room temperature; it usually ripens in a day or two."),
        ("Should I wash raw chicken before cooking it?", "Is rinsing chicken under the tap a good idea?",
         "No. Rinsing raw chicken splashes bacteria around the sink; cooking it thoroughly is what makes it safe."),
        ("How do I make a simple salad dressing?", "What's an easy homemade vinaigrette?",
         "Whisk three parts oil with one part vinegar or lemon juice, then add salt, pepper and a little mustard."),
        ("What does it mean to simmer something?", "What's the difference between simmering and boiling?",
         "Simmering means cooking liquid just below boiling, with small bubbles gently rising instead of a rolling boil."),
        ("How do I stop a pot from boiling over?", "Why does my pot keep foaming over, and how do I stop it?",
         "Turn down the heat, use a bigger pot, or leave the lid slightly open so steam can escape."),
        ("How should I store fresh herbs?", "How do I keep parsley and basil from wilting so fast?",
         "Stand soft herbs like parsley in a glass of water, and wrap hardy herbs like thyme in a damp paper towel in the fridge."),
    ],
    "travel": [
        ("Is it safe to drink tap water when traveling?", "How do I avoid getting sick from the water abroad?",
         "Where tap water is not safe, drink sealed bottled or boiled water, and skip ice and raw food rinsed in tap water."),
        ("How early should I get to the airport?", "How much time before my flight should I arrive at the airport?",
         "About two hours before departure is a safe rule for domestic flights, and about three hours for international ones."),
        ("How can I avoid jet lag?", "Any tips for beating jet lag on a long trip?",
         "Shift your sleep toward the new time zone before you leave, drink water, and get daylight when you arrive."),
        ("What should I pack in my carry-on bag?", "What belongs in hand luggage rather than a checked bag?",
         "Medicines, documents, valuables, chargers and a change of clothes, in case your checked bag is delayed."),
        ("Do I need travel insurance?", "Is travel insurance worth paying for?",
         "It is worth having for expensive or international trips, since it can cover medical care, cancellations and lost luggage."),
        ("How do I pack clothes to save space?", "How can I fit more clothes in a small suitcase?",
         "Roll your clothes instead of folding them, and use packing cubes to compress and organize them."),
        ("What is the cheapest day to book a flight?", "Is there a best weekday for buying plane tickets?",
         "No single day is reliably cheapest; comparing prices across flexible travel dates usually saves more."),
        ("How can I keep my money safe while traveling?", "What's the safest way to carry cash and cards on a trip?",
         "Carry only what you need, keep a backup card somewhere separate, and use ATMs inside banks or shops."),
        ("What should I do if I lose my passport abroad?", "My passport was stolen overseas. What now?",
         "Report it to the local police and contact your country's embassy or consulate for an emergency travel document."),
        ("How do I avoid motion sickness in a car?", "What helps with carsickness on long drives?",
         "Sit in the front, look at the horizon, get fresh air, and avoid reading while the car is moving."),
        ("Should I exchange money before a trip or after arriving?", "Where do I get the best rate for foreign cash?",
         "Withdrawing local cash from a bank ATM after you arrive usually beats the rates at airport exchange counters."),
        ("How do I find cheap places to stay?", "What's a good way to save money on accommodation?",
         "Compare hostels, guesthouses and rentals on several sites, and consider staying a little outside the city center."),
        ("How can I stay comfortable on a long flight?", "Any tips for surviving a ten-hour flight?",
         "Wear loose clothes, drink water, walk the aisle now and then, and stretch your legs to help circulation."),
        ("How do I know if I need a visa?", "Do I need a visa to visit another country?",
         "It depends on your passport and destination, so check the destination country's official government website before booking."),
        ("How much should I tip at restaurants?", "What's a normal restaurant tip?",
         "It varies by country; in the United States 15 to 20 percent is usual, while many countries expect little or none."),
        ("How can I use my phone abroad without huge charges?", "How do I avoid roaming fees when traveling?",
         "Buy a local SIM or eSIM, or turn off data roaming and use Wi-Fi."),
        ("What documents should I keep copies of when traveling?", "Which travel papers are worth photocopying?",
         "Keep copies of your passport, visa, insurance and bookings, both on paper and stored securely online."),
    ],
    "health habits": [
        ("How much water should I drink each day?", "What's a reasonable daily water intake?",
         "Needs vary, but many adults do well with about six to eight glasses a day, plus more in heat or during exercise."),
        ("How much sleep do adults need?", "How many hours of sleep should a grown-up get?",
         "Most adults need seven to nine hours of sleep a night to feel rested."),
        ("How often should I brush my teeth?", "How many times a day should I brush?",
         "Brush twice a day for about two minutes with fluoride toothpaste, and clean between your teeth once a day."),
        ("How much exercise should I get each week?", "What's the recommended amount of weekly exercise for adults?",
         "Aim for about 150 minutes of moderate activity a week, plus muscle-strengthening exercise on two days."),
        ("How can I fall asleep faster?", "What helps when I lie awake for ages at night?",
         "Keep a regular bedtime, avoid screens and caffeine late in the day, and keep your bedroom dark and cool."),
        ("Is it bad to sit all day?", "Does sitting at a desk for hours hurt my health?",
         "Long periods of sitting are linked to health problems, so stand up and move for a few minutes every half hour or so."),
        ("How long should I wash my hands?", "What's the proper way to wash my hands?",
         "Scrub with soap for at least 20 seconds, covering the backs of your hands, between your fingers and under your nails."),
        ("Is breakfast really that important?", "Why do people call breakfast the most important meal?",
         "A balanced breakfast can give you steady energy and help you concentrate, but the overall quality of your diet matters most."),
        ("How can I reduce eye strain from screens?", "My eyes get tired at the computer. What helps?",
         "Follow the 20-20-20 rule: every 20 minutes, look at something 20 feet away for 20 seconds."),
        ("Do I need to stretch before exercising?", "Should I do stretches before a workout?",
         "A light warm-up like brisk walking helps more before exercise; longer static stretches suit the cool-down better."),
        ("How can I cut down on sugar?", "What are easy ways to eat less sugar?",
         "Drink water instead of soda, read food labels, and reach for fruit when you want something sweet."),
        ("How often should I replace my toothbrush?", "When is it time for a new toothbrush?",
         "Replace it every three to four months, or sooner if the bristles are frayed."),
        ("Do I need sunscreen on cloudy days?", "Can I skip sunscreen when it's overcast?",
         "Yes, you still need it. Much of the sun's UV light passes through clouds, so wear sunscreen when you are outdoors."),
        ("What is a healthy way to handle stress?", "How can I cope with stress without bad habits?",
         "Regular exercise, enough sleep, time outdoors and talking with people you trust all help you manage stress."),
        ("How many servings of fruit and vegetables should I eat?", "How much fruit and veg do I need a day?",
         "A common guideline is at least five servings of fruit and vegetables a day, with plenty of variety."),
        ("Why is walking good for you?", "What are the benefits of a daily walk?",
         "Regular walking strengthens your heart, helps control weight, lifts your mood and is easy on your joints."),
        ("How long should a power nap be?", "What's the ideal length for a daytime nap?",
         "Keep it to about 10 to 20 minutes so you wake up refreshed rather than groggy."),
    ],
    "money": [
        ("What is a credit report?", "What information is on my credit report?",
         "A credit report is a record of your borrowing and repayment history, which lenders use to judge how risky you are."),
        ("What is a budget?", "What does it mean to make a budget?",
         "A budget is a plan for your money that lists your income and decides how much goes to bills, spending and savings."),
        ("How much should I keep in an emergency fund?", "How big should my rainy-day savings be?",
         "A common goal is three to six months of essential expenses, kept in an easy-to-reach savings account."),
        ("What is compound interest?", "Can you explain how compound interest works?",
         "It is interest earned on both your original money and the interest already added, so your savings grow faster over time."),
        ("What is the 50/30/20 rule?", "What does the 50/30/20 budgeting rule mean?",
         "It is a budgeting guide: spend about 50 percent of income on needs, 30 percent on wants, and save 20 percent."),
        ("How can I improve my credit score?", "What raises a credit score?",
         "Pay every bill on time, keep credit card balances low, and avoid opening many new accounts at once."),
        ("What is the difference between a debit card and a credit card?", "Debit card or credit card: how are they different?",
         "A debit card spends money already in your bank account, while a credit card borrows money you repay later."),
        ("Should I pay off debt or save first?", "Is it smarter to save money or clear my debts?",
         "Build a small emergency fund first, then focus on paying off high-interest debt before saving more."),
        ("What is inflation?", "What do people mean when they talk about inflation?",
         "Inflation is the general rise in prices over time, which means the same amount of money buys a little less."),
        ("How can I save money on groceries?", "What are good ways to cut my food shopping bill?",
         "Plan meals, shop with a list, compare unit prices, and choose store brands when they are good enough."),
        ("What is APR on a credit card?", "What does the APR on my card statement mean?",
         "APR is the yearly interest rate charged on balances you carry, so paying in full each month avoids it."),
        ("How can I stop impulse buying?", "How do I stop buying things I don't need?",
         "Wait 24 hours before buying anything you did not plan for, and unsubscribe from store marketing emails."),
        ("What is diversification in investing?", "Why do people say not to put all your eggs in one basket with investments?",
         "Diversification means spreading money across many investments, so one bad result does not hurt you too much."),
        ("What is an index fund?", "How does an index fund work?",
         "An index fund is a low-cost fund that holds the stocks in a market index, such as the S&P 500, to match its returns."),
        ("How do I start saving when money is tight?", "I live paycheck to paycheck. How can I begin saving?",
         "Start small: move a fixed amount, even a few dollars, into savings automatically each payday."),
        ("Why should I check my bank statements?", "Is it worth reading my bank statement every month?",
         "Checking your statements helps you catch errors, fraud and forgotten subscriptions early."),
        ("Is it better to rent or buy a home?", "Should I keep renting or buy a house?",
         "It depends on how long you will stay, local prices and your savings; buying usually pays off only over several years."),
    ],
    "home care": [
        ("How do I unclog a slow drain?", "My sink drains really slowly. How can I fix it?",
         "Try a plunger first; if that fails, pour baking soda and then vinegar down it, wait 15 minutes, and flush with hot water."),
        ("How often should I change my furnace filter?", "When should I replace the air filter in my heating system?",
         "Most filters should be changed every one to three months, and more often if you have pets or allergies."),
        ("How do I get a red wine stain out?", "I spilled red wine on fabric. What should I do?",
         "Blot it right away, cover it with salt or baking soda, then rinse with cold water and wash as usual."),
        ("How can I make my home warmer without turning up the heat?", "How do I keep a drafty house warm cheaply?",
         "Seal drafts around doors and windows, close thick curtains at night, and put rugs on bare floors."),
        ("How often should I test my smoke alarms?", "When should smoke detectors be checked?",
         "Test them once a month and replace the batteries at least once a year."),
        ("How do I get rid of fruit flies?", "There are tiny flies around my fruit bowl. How do I stop them?",
         "Set out a small dish of cider vinegar with a drop of dish soap, and throw away overripe fruit."),
        ("How can I lower my electricity bill?", "What are simple ways to use less electricity at home?",
         "Switch to LED bulbs, unplug devices you are not using, and wash clothes in cold water."),
        ("How do I clean a microwave easily?", "What's the trick for cleaning a dirty microwave?",
         "Heat a bowl of water with lemon slices for a few minutes, then wipe away the loosened grime."),
        ("How often should I water my houseplants?", "How do I know when my indoor plants need water?",
         "Water most houseplants when the top inch of soil feels dry, rather than on a fixed schedule."),
        ("How do I remove limescale from a kettle?", "How can I descale my kettle?",
         "Fill it halfway with equal parts water and white vinegar, boil it, let it sit for an hour, then rinse well."),
        ("What should I do when a circuit breaker trips?", "The power went out in one room. How do I reset the breaker?",
         "Unplug some devices on that circuit, then switch the breaker fully off and back on. If it keeps tripping, call an electrician."),
        ("How do I stop a door from squeaking?", "How can I fix a creaky door hinge?",
         "Put a little oil or silicone spray on the hinges, then swing the door back and forth a few times."),
        ("How do I keep my fridge from smelling?", "What gets rid of bad smells in the refrigerator?",
         "Keep an open box of baking soda inside, wipe up spills quickly, and throw out old food each week."),
        ("How do I fix a running toilet?", "Why does my toilet keep running after I flush?",
         "Usually the rubber flapper in the tank is worn or its chain is tangled; adjusting the chain or replacing the flapper fixes it."),
        ("How can I reduce dust in my house?", "Why is my home so dusty, and what helps?",
         "Vacuum with a HEPA filter, wash bedding weekly, dust with a damp cloth, and use doormats at the entrances."),
        ("How can I prevent mold in the bathroom?", "What stops mold from growing around my shower?",
         "Run the fan or open a window during and after showers, and wipe down wet surfaces."),
    ],
    "studying": [
        ("How do I study for a math test?", "What's the best way to prepare for a maths exam?",
         "Work through plenty of practice problems without looking at the answers, then review every mistake until you understand it."),
        ("What is the best way to memorize information?", "How can I remember what I study for longer?",
         "Test yourself with flashcards and spread your review over several days instead of cramming once."),
        ("How can I stay focused while studying?", "I get distracted every few minutes when I study. What helps?",
         "Put your phone in another room, study in short blocks with breaks, and set one clear goal per session."),
        ("What is the Pomodoro technique?", "How does the Pomodoro method work?",
         "You work for 25 minutes, take a 5-minute break, and take a longer break after four rounds."),
        ("How do I take good notes in class?", "What's a good way to take lecture notes?",
         "Write key ideas in your own words instead of everything said, and review your notes within a day."),
        ("Is it better to study in the morning or at night?", "What time of day is best for studying?",
         "Neither is best for everyone; study when you feel most alert and keep a consistent schedule."),
        ("How should I prepare for an exam?", "What's a good plan for exam revision?",
         "Start early, practice with past questions, review your weak areas, and get a full night of sleep before the test."),
        ("How do I write a good essay introduction?", "What goes in the first paragraph of an essay?",
         "Open with a hook, give brief context, and end the paragraph with a clear thesis statement."),
        ("How can I read faster?", "Is there a way to get through reading assignments quicker?",
         "Preview the headings first, avoid rereading lines, and skim easy parts while slowing down for hard ones."),
        ("What's the best way to learn a new language?", "How should I go about learning a foreign language?",
         "Practice a little every day, learn the most common words first, and speak with real people as early as you can."),
        ("What is a thesis statement?", "What does my teacher mean by a thesis statement?",
         "A thesis statement is one or two sentences that state the main argument or point of an essay."),
        ("How do I cite a source in a paper?", "What information do I need to reference a source?",
         "Follow the style your teacher asks for, such as APA or MLA, and include the author, title, date and publisher or link."),
        ("How can I stop procrastinating?", "I keep putting off my homework. How do I get started?",
         "Break the task into tiny steps, commit to just five minutes, and remove distractions before you begin."),
        ("Does listening to music help with studying?", "Is it okay to study with music on?",
         "Quiet instrumental music helps some people, but songs with lyrics usually make reading and writing harder."),
        ("How do I make a study schedule?", "How should I plan my study week?",
         "List your subjects and deadlines, block short regular sessions in your week, and leave spare time for review."),
        ("What is active recall?", "What do people mean by active recall when studying?",
         "It means testing yourself by pulling information from memory instead of rereading it, which strengthens learning."),
        ("How many hours should I study a day?", "Is studying ten hours a day a good idea?",
         "Quality matters more than hours; a few focused sessions with breaks usually beat long, tired stretches."),
    ],
    "work": [
        ("How do I write a professional email?", "What makes a work email sound professional?",
         "Use a clear subject line, get to the point in the first lines, keep it short, and end with a polite sign-off."),
        ("How should I prepare for a job interview?", "What should I do before an interview?",
         "Research the company, practice answers to common questions, prepare a few questions of your own, and arrive early."),
        ("How long should a resume be?", "How many pages should my CV be?",
         "One page is enough for most people early in their careers; two pages is fine if you have long experience."),
        ("How do I ask for a raise?", "What's the right way to ask my boss for more pay?",
         "Pick a good time, show specific results you have delivered, know the market rate, and ask for a clear number."),
        ("How can I manage my time better at work?", "How do I get more done during the workday?",
         "Write a daily list, do the most important task first, and batch small tasks like email together."),
        ("How do I deal with a difficult coworker?", "A colleague keeps being rude to me. What should I do?",
         "Stay calm, talk to them privately about the specific behavior, and involve your manager only if it continues."),
        ("What should I write in a cover letter?", "What goes into a good cover letter?",
         "Explain why you want the role, match two or three of your strengths to the job, and keep it under one page."),
        ("How do I run a good meeting?", "How can I make my team meetings less of a waste of time?",
         "Share an agenda beforehand, start and end on time, and finish with clear next steps and owners."),
        ("How should I follow up after an interview?", "Should I contact the company after a job interview?",
         "Send a short thank-you email within a day that mentions something specific from the conversation."),
        ("How can I avoid burnout?", "What can I do to keep from burning out at my job?",
         "Set clear work hours, take real breaks and vacations, and speak up early when your workload is too heavy."),
        ("How do I give constructive feedback?", "What's a kind but useful way to criticize someone's work?",
         "Describe the specific behavior, explain its effect, suggest an improvement, and say it privately and kindly."),
        ("What is networking?", "What does professional networking actually involve?",
         "Networking is building work relationships by meeting people, staying in touch, and helping each other over time."),
        ("How do I say no to extra work politely?", "How can I turn down a new task without upsetting my boss?",
         "Thank them, explain your current priorities, and offer an alternative such as a later date or a smaller part."),
        ("How should I prepare for a presentation?", "What's the best way to get ready to present?",
         "Know your main message, keep the slides simple, and rehearse out loud a few times with a timer."),
        ("What should I do on my first day at a new job?", "How do I make a good start at a new workplace?",
         "Arrive early, introduce yourself, listen more than you talk, and write down names and key processes."),
        ("How do I stay productive working from home?", "How can I focus when I work remotely?",
         "Keep a set schedule, use a dedicated workspace, get dressed for the day, and take short breaks."),
    ],
    "technology": [
        ("What is malware?", "What counts as malware on a computer?",
         "Malware is any software designed to harm a device or steal data, such as viruses, spyware and ransomware."),
        ("How do I make a strong password?", "What makes a password hard to crack?",
         "Use a long passphrase of several random words, and use a different password for every account."),
        ("What is two-factor authentication?", "What does 2FA mean on my accounts?",
         "It is a second check at login, like a code from your phone, so a stolen password alone is not enough."),
        ("Why should I update my software?", "Do I really need to install all those updates?",
         "Updates fix security holes and bugs, so installing them promptly helps keep your device safe."),
        ("How can I speed up a slow computer?", "My laptop has become really sluggish. What can I do?",
         "Restart it, close unused programs, remove startup apps you do not need, and free up disk space."),
        ("What is the cloud?", "What does it mean when files are stored in the cloud?",
         "The cloud means storing files or running programs on remote servers over the internet instead of on your own device."),
        ("How do I back up my files?", "What's a good way to make sure I never lose my files?",
         "Keep copies on an external drive and in a cloud service, and set the backups to run automatically."),
        ("How can I spot a phishing email?", "How do I tell if an email is a scam?",
         "Watch for urgent demands, odd sender addresses, spelling errors and links that do not match the real site."),
        ("What is a VPN?", "What does a VPN actually do?",
         "A VPN encrypts your internet traffic and routes it through another server, which adds privacy on public Wi-Fi."),
        ("How do I improve my Wi-Fi signal?", "Why is my Wi-Fi weak in some rooms, and how do I fix it?",
         "Place the router in a central, raised spot away from thick walls and appliances, and restart it now and then."),
        ("What is the difference between RAM and storage?", "Are memory and storage the same thing on a computer?",
         "RAM is short-term memory for running programs, while storage keeps your files even when the device is off."),
        ("How do I take a screenshot on Windows?", "What's the shortcut for a screenshot on a Windows PC?",
         "Press the Windows key, Shift and S together to select an area, or press Print Screen to capture the whole screen."),
        ("How can I make my phone battery last longer?", "My phone dies by mid-afternoon. How do I save battery?",
         "Lower the screen brightness, turn off features you are not using, and limit apps that run in the background."),
        ("What is a browser cookie?", "What are cookies on websites?",
         "A cookie is a small file a website saves in your browser to remember things like logins and preferences."),
        ("How do I free up space on my phone?", "My phone storage is full. What should I delete?",
         "Remove apps you do not use, back up and delete old photos and videos, and clear large app caches."),
        ("What does restarting a device actually do?", "Why does turning it off and on again fix so many problems?",
         "Restarting clears temporary memory and stops stuck processes, which fixes many small glitches."),
        ("What is a password manager?", "Should I use a password manager?",
         "A password manager is an app that stores your passwords securely and creates strong, unique ones for each site."),
        ("Is public Wi-Fi safe to use?", "Can I trust the free Wi-Fi at a cafe?",
         "It is fine for casual browsing, but avoid banking or typing passwords on it unless you use a VPN."),
    ],
    "nature": [
        ("How do trees help the environment?", "Why are trees important for the planet?",
         "Trees absorb carbon dioxide, release oxygen, give shade and homes to wildlife, and help prevent soil erosion."),
        ("Why is the sky blue?", "What makes the daytime sky look blue?",
         "Air molecules scatter blue sunlight more than other colors, so blue light reaches our eyes from every direction."),
        ("Why do leaves change color in autumn?", "What makes leaves turn yellow and red in the fall?",
         "As days shorten, trees stop making green chlorophyll, revealing yellow and orange pigments, and some make red ones."),
        ("How do bees make honey?", "How is honey made inside a beehive?",
         "Bees collect flower nectar, break it down with enzymes, and fan it with their wings until most water evaporates."),
        ("Why do cats purr?", "What does it mean when a cat purrs?",
         "Cats often purr when content, but they also purr when stressed or hurt, probably to calm themselves."),
        ("How do birds find their way when they migrate?", "How do migrating birds navigate?",
         "Birds use the sun, the stars, Earth's magnetic field and familiar landmarks to find their way."),
        ("What causes a rainbow?", "How does a rainbow form?",
         "Sunlight bends and reflects inside raindrops, splitting into its colors; you see a rainbow with the sun behind you."),
        ("Why do we have seasons?", "What causes summer and winter?",
         "Earth's axis is tilted, so each hemisphere gets more direct sunlight for part of the year and less for the rest."),
        ("How do plants make food?", "What is photosynthesis in simple terms?",
         "Plants use sunlight, water and carbon dioxide to make sugar, releasing oxygen as a by-product."),
        ("What causes thunder?", "Where does the sound of thunder come from?",
         "Lightning heats the air so fast that it expands violently, creating the sound wave we hear as thunder."),
        ("How long do dogs usually live?", "What is the typical lifespan of a dog?",
         "Most dogs live about 10 to 13 years, and smaller breeds usually live longer than large ones."),
        ("Why do tides rise and fall?", "What causes high and low tide?",
         "The Moon's gravity, and to a lesser degree the Sun's, pulls on the oceans, giving most coasts two high tides a day."),
        ("How can I tell how far away a storm is?", "How do I work out the distance to a thunderstorm?",
         "Count the seconds between the lightning and the thunder, then divide by three for kilometers or by five for miles."),
        ("Why do some animals hibernate?", "What is the point of hibernation?",
         "Hibernation lets animals save energy through winter, when food is scarce, by slowing their heart rate and breathing."),
        ("How do I attract birds to my garden?", "What brings more birds into a backyard?",
         "Offer food, fresh water and shelter such as shrubs, and plant native flowers that draw insects and seeds."),
        ("What is the difference between weather and climate?", "Are weather and climate the same thing?",
         "Weather is the day-to-day conditions, while climate is the average pattern of weather in a place over many years."),
        ("Why do stars twinkle?", "What makes stars seem to flicker at night?",
         "Moving layers of air in Earth's atmosphere bend starlight slightly, so stars appear to flicker."),
        ("Why is the ocean salty?", "Where does the salt in seawater come from?",
         "Rain slowly wears down rocks on land, and rivers carry the dissolved minerals, including salt, into the sea."),
    ],
    "pets": [
        ("How do I trim my dog's nails safely?", "Is it hard to clip a dog's claws at home?",
         "Use proper pet clippers, cut small bits at a time, and avoid the pink quick; a vet or groomer can show you how."),
        ("How often should I feed an adult dog?", "How many meals a day does a grown dog need?",
         "Most adult dogs do well with two meals a day, sized to their weight and activity level."),
        ("How often should I walk my dog?", "How many walks does a dog need each day?",
         "Most dogs need at least two walks a day, and active breeds need more exercise than that."),
        ("Why does my cat scratch the furniture?", "How do I stop my cat from clawing the sofa?",
         "Scratching keeps claws healthy and marks territory, so give your cat a sturdy scratching post near the furniture."),
        ("How often should I clean the litter box?", "How frequently does cat litter need changing?",
         "Scoop it at least once a day and replace all of the litter about once a week."),
        ("Can dogs eat chocolate?", "Is it dangerous if my dog eats chocolate?",
         "No. Chocolate contains theobromine, which is toxic to dogs, and dark chocolate is the most dangerous kind."),
        ("How do I stop my puppy from biting?", "My puppy nips at my hands all the time. What should I do?",
         "Redirect the biting to a chew toy, pause play briefly when teeth touch skin, and praise gentle behavior."),
        ("How often should I clean my fish tank?", "How much of the aquarium water should I change?",
         "Change about 10 to 25 percent of the water each week, and clean the glass and gravel as needed."),
        ("How do I introduce a new cat to my home?", "What's the best way to settle a newly adopted cat?",
         "Keep it in one quiet room at first, then let it explore gradually and meet other pets slowly."),
        ("How often should my pet see the vet?", "How many vet checkups does a healthy pet need?",
         "Most healthy pets need a checkup once a year, and older pets may need one every six months."),
        ("Why does my dog eat grass?", "Should I worry if my dog chews grass on walks?",
         "Many dogs eat grass simply because they like it or are bored; small amounts are usually harmless."),
        ("How can I keep my pet cool in summer?", "How do I protect my dog in hot weather?",
         "Provide shade and fresh water, walk early or late in the day, and never leave a pet in a parked car."),
        ("Which houseplants are toxic to cats?", "Are any common plants dangerous for cats?",
         "Lilies are especially dangerous to cats, and plants like pothos, aloe and sago palm can also make them sick."),
    ],
    "cars and getting around": [
        ("How often should I check my tire pressure?", "When should I check the air in my tires?",
         "Check it about once a month and before long trips, while the tires are cold."),
        ("How often should I change my car's oil?", "How many miles between oil changes?",
         "Follow your owner's manual; many modern cars need an oil change every 5,000 to 10,000 miles."),
        ("What should I do if my car battery dies?", "My car won't start because the battery is flat. What now?",
         "Jump-start it with cables and another car or a portable jump starter, then drive for a while to recharge it."),
        ("How can I save fuel while driving?", "What driving habits use less gas?",
         "Accelerate gently, keep a steady speed, keep your tires properly inflated, and remove extra weight from the car."),
        ("What does the check engine light mean?", "My check engine light came on. Should I worry?",
         "The car's computer has detected a problem, anything from a loose gas cap to engine trouble, so have the code read soon."),
        ("How do I drive safely in the rain?", "What should I do differently when driving on wet roads?",
         "Slow down, leave extra following distance, turn on your headlights, and avoid sudden braking."),
        ("How do I defog my windshield quickly?", "How can I clear a steamed-up windshield fast?",
         "Turn the defroster to high heat, switch on the air conditioning to dry the air, and use the rear defogger too."),
        ("What should I keep in my car for emergencies?", "What goes in a car emergency kit?",
         "Keep a first aid kit, jumper cables, a flashlight, water, a blanket and a phone charger."),
        ("How can I stay comfortable on a long bike ride?", "Any tips for riding a bike for hours?",
         "Set the saddle at the right height, wear padded shorts, drink regularly, and take short breaks."),
        ("How often should I rotate my tires?", "When do car tires need rotating?",
         "Rotate them about every 5,000 to 8,000 miles, or as your owner's manual recommends."),
    ],
    "everyday chores": [
        ("How do I get rid of a bad smell in my shoes?", "My sneakers stink. How do I freshen them up?",
         "Sprinkle baking soda inside and leave it overnight, let the shoes dry fully between wears, and wash the insoles if you can."),
        ("How can I tell if a watermelon is ripe?", "How do I pick a good watermelon at the store?",
         "Look for a creamy yellow spot where it rested on the ground, and listen for a deep, hollow sound when you tap it."),
        ("How do I choose a good mattress?", "What should I look for when buying a mattress?",
         "Try it in person if you can, pick a firmness that suits how you sleep, and look for a long trial period."),
        ("What does a best-before date on food mean?", "Is food bad after the best-before date?",
         "It is about quality rather than safety; food is often still fine after that date if it was stored properly."),
        ("How do I remove sticky label residue?", "How can I get the gunk from a sticker off a jar?",
         "Rub in a little cooking oil or rubbing alcohol, let it sit for a minute, then wipe it away."),
        ("How do I keep clothes from shrinking?", "How should I wash clothes so they don't shrink?",
         "Wash them in cold water on a gentle cycle, and air dry them instead of using a hot dryer."),
        ("How do I get wrinkles out without an iron?", "I don't own an iron. How can I smooth a wrinkled shirt?",
         "Hang it in a steamy bathroom during a hot shower, or tumble it in the dryer with a damp towel for a few minutes."),
        ("How do I keep cut flowers fresh longer?", "How can I make a bouquet last?",
         "Trim the stems at an angle, change the water every two days, and keep the vase out of direct sun."),
        ("How do I return an online order?", "What's the process for sending back something I bought online?",
         "Check the store's return policy, start the return on its website, and pack the item with the label or receipt."),
    ],
    "getting along with others": [
        ("How do I politely decline an invitation?", "What's a nice way to say no to a party invite?",
         "Thank them for inviting you, say briefly that you can't make it, and suggest another time if you mean it."),
        ("How do I remember people's names?", "I always forget names right after meeting someone. Any tips?",
         "Repeat the name when you are introduced, use it once in conversation, and link it to something about the person."),
        ("How do I start a conversation with a stranger?", "What's an easy way to strike up a chat with someone new?",
         "Comment on something you share, like the place or the event, and follow up with an open question."),
        ("How do I apologize properly?", "What makes an apology sincere?",
         "Say clearly what you did wrong, acknowledge how it affected the other person, and explain how you will do better."),
        ("How can I be a better listener?", "What are good listening habits?",
         "Give your full attention, do not interrupt, and ask questions or sum up what you heard."),
        ("How do I write a thank-you note?", "What should a thank-you card say?",
         "Thank the person for the specific gift or help, say how you will use or value it, and keep it warm and brief."),
        ("How do I politely end a phone call?", "How can I wrap up a call without being rude?",
         "Briefly sum up, thank them for calling, and say you need to go, for example: I'll let you get on with your day."),
        ("How do I make small talk?", "I'm bad at small talk. How do I get better?",
         "Ask about the person's plans, work or interests, listen for details, and share a little about yourself too."),
        ("How can I feel less nervous about public speaking?", "How do I calm my nerves before giving a speech?",
         "Practice out loud, know your opening by heart, breathe slowly, and focus on your message rather than yourself."),
    ],
    "exercise": [
        ("Why are my muscles sore a day or two after exercise?", "What causes soreness the day after a workout?",
         "Muscles doing unfamiliar work get tiny strains that cause delayed soreness; it usually fades within a few days."),
        ("How do I start running as a beginner?", "I've never run before. How should I begin?",
         "Alternate walking and running for 20 to 30 minutes three times a week, running a little more as you get fitter."),
        ("How many rest days should I take from exercise?", "How often should I take a day off from working out?",
         "Most people benefit from one or two rest days a week, and more if they feel very sore or tired."),
        ("What should I eat after a workout?", "What's a good snack after exercising?",
         "Have a mix of protein and carbohydrates, such as yogurt with fruit, within a couple of hours."),
        ("How do I do a proper squat?", "What is the correct form for a squat?",
         "Stand with feet shoulder-width apart, keep your chest up, push your hips back, and lower until your thighs are about parallel."),
        ("Is walking as good as running?", "Can walking replace running for fitness?",
         "Walking burns fewer calories per minute, but brisk walking still brings many of the same health benefits."),
        ("How can I fit exercise into a busy day?", "I have no time for the gym. How can I stay active?",
         "Take the stairs, walk during phone calls, and do short ten-minute workouts before or after work."),
    ],
}

# Casual openers and closers sometimes put around a question, so prompts vary in tone.
PROMPT_PREFIXES = [
    "Quick question: ", "Hi! ", "Hey, quick one. ", "I've always wondered about this. ",
    "A friend asked me this and I wasn't sure. ", "Question about {topic}: ", "Can you help me with something? ",
    "Hello. ", "Here's something I never figured out. ",
]
PROMPT_SUFFIXES = [" Thanks!", " Thanks in advance.", " Any advice?", " I'd appreciate the help.", " Just curious."]

# --- the padding that makes a rejected answer ramble --------------------------------------------
OPENERS = [
    "Great question! Let me think about this for a second.",
    "So, well, basically...",
    "Oh, that's a really interesting thing to wonder about, honestly.",
    "Okay, so, hmm, where do I even begin?",
    "Ah, yes, I love questions like this one!",
    "Well, first of all, thank you so much for asking.",
    "Alright, let me walk you through my thinking here.",
    "Hmm, okay, that's a good one.",
    "Wow, what a great thing to ask about!",
    "Oh boy, okay. Bear with me for a moment.",
    "Sure thing! Um, let me gather my thoughts first.",
    "Right, so this is actually a pretty common question.",
]
ECHOES = [
    'So you want to know: "{q}"',
    'Your question, if I understand it correctly, is "{q}"',
    'Let me just restate what you asked: "{q}" Okay, got it.',
    'You asked "{q}" and that deserves a proper answer.',
    'Just so we are on the same page, the question is "{q}"',
    'So, "{q}" Right.',
]
TOPIC_REMARKS = [
    "A lot of people get confused about {topic}, so you are not alone.",
    "Questions about {topic} come up more often than you might think.",
    "Honestly, {topic} can get surprisingly tricky once you dig into it.",
    "Everyone seems to have an opinion about {topic}.",
    "There is a lot of advice out there about {topic}, and not all of it agrees.",
]
HEDGES = [
    "Now, I'm not an expert, so take this with a grain of salt.",
    "I could be wrong, and there are probably exceptions, but generally speaking...",
    "Of course, it kind of depends on a lot of things.",
    "I don't want to overstate anything, because details always vary.",
    "This is just my general understanding, so you may hear other versions.",
    "It's sort of complicated, or at least it can be.",
]
ANSWER_INTROS = [
    "Anyway, the short version is this: {a}",
    "So here's what I'd say. {a}",
    "Basically, and I'm fairly sure about this part: {a}",
    "Okay, so, the main thing to know is this. {a}",
    "Putting it all together, more or less: {a}",
    "So, to actually get to the point. {a}",
    "{a}",
]
RESTATES = [
    "So, to say it again in case it got lost in there: {a}",
    "In other words, just to repeat the main point: {a}",
    "Let me say that one more time, because it's the key part. {a}",
    "To sum up what I just said: {a}",
    "So yeah, once again, just so it's clear: {a}",
]
ASIDES = [
    "Funny enough, I was reading about something totally different the other day and it reminded me of this.",
    "This reminds me of my neighbor, who had an opinion on everything, but that's a story for another time.",
    "People have probably been wondering about things like this forever, if you think about it.",
    "It's amazing how many little things in life turn out to be more complicated than they seem.",
    "By the way, it's always smart to double check things like this with more than one source.",
    "Side note, but isn't it funny how simple questions are often the ones nobody explains properly?",
    "I remember being pretty surprised when I first learned this, though I can't remember why.",
    "Anyway, I'm getting a little sidetracked, but it's all sort of connected.",
    "There's probably a whole history behind this, but I'll skip most of it.",
]
CLOSINGS = [
    "I hope this helps! Let me know if you have any other questions, and I'll be happy to explain more.",
    "Anyway, that's pretty much everything I can think of. Feel free to ask me anything else!",
    "So, yeah, I hope that answers your question, at least mostly. Just let me know if anything is unclear.",
    "Well, that was longer than I planned, sorry about that! Hopefully some of it was useful.",
    "I really hope that was helpful. Don't hesitate to ask if you want me to expand on any part of it.",
    "And that's about it, I think. Thanks again for such a great question, and have a wonderful day!",
    "Let me know if this makes sense or if you'd like more details. I'm happy to keep going!",
    "Hope that helps, and good luck!",
]
FILLERS = ["Um, so, yeah.", "Anyway.", "Right, so.", "Okay, where was I?", "You know what I mean?"]

MIN_REJECTED, MAX_REJECTED, MAX_ROW = 60, 150, 175  # words; MAX_ROW caps prompt + rejected


def words(text: str) -> int:
    return len(text.split())


def lower_first(text: str) -> str:
    if text.startswith(("I ", "I'")):
        return text
    return text[0].lower() + text[1:]


def make_prompt(rng: random.Random, question: str, topic: str) -> str:
    style = rng.random()
    if style < 0.4:
        return question
    if style < 0.75:
        prefix = rng.choice(PROMPT_PREFIXES).format(topic=topic)
        return prefix + question
    if style < 0.9:
        return question + rng.choice(PROMPT_SUFFIXES)
    return "Hey, " + lower_first(question)


def ramble(rng: random.Random, question: str, answer: str, topic: str) -> str:
    """The same answer, padded: an opener, an echo of the question, maybe a hedge, a remark on the
    topic and an aside, the answer said twice, and a sign-off."""
    opener = rng.choice(OPENERS)
    middle = [rng.choice(ECHOES).format(q=question)]
    if rng.random() < 0.4:
        middle.append(rng.choice(TOPIC_REMARKS).format(topic=topic))
    if rng.random() < 0.6:
        middle.append(rng.choice(HEDGES))
    rng.shuffle(middle)
    first = rng.choice(ANSWER_INTROS).format(a=answer)
    again = rng.choice(RESTATES).format(a=answer)
    extras = []
    if rng.random() < 0.6:
        extras.append(rng.choice(ASIDES))
    if rng.random() < 0.25:
        extras.append(rng.choice(FILLERS))
    if rng.random() < 0.5:
        parts = [opener, *middle, first, *extras, again]
    else:
        parts = [opener, *middle, first, again, *extras]
    if rng.random() < 0.2:  # sometimes the echo comes before the opener
        parts[0], parts[1] = parts[1], parts[0]
    parts.append(rng.choice(CLOSINGS))
    return " ".join(parts)


def make_rejected(rng: random.Random, prompt: str, question: str, answer: str, topic: str) -> str:
    """A rambling answer about 3-6 times as long as the answer (60-150 words), redrawn until it fits."""
    n_answer = words(answer)
    low = max(MIN_REJECTED, 3 * n_answer)
    high = min(MAX_REJECTED, max(6 * n_answer, 90), MAX_ROW - words(prompt))
    for _ in range(500):
        text = ramble(rng, question, answer, topic)
        if low <= words(text) <= high:
            return text
    raise ValueError(f"could not fit a rambling answer for {question!r}")


def build(seed: int = 20261203) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set()
    for topic, facts in FACTS.items():
        for first, second, answer in facts:
            for question in (first, second):
                prompt = make_prompt(rng, question, topic)
                assert prompt not in seen, prompt
                seen.add(prompt)
                rows.append({"prompt": prompt, "chosen": answer,
                             "rejected": make_rejected(rng, prompt, question, answer, topic)})
    rng.shuffle(rows)
    return rows


def check(rows: list[dict]) -> None:
    for row in rows:
        for side in ("prompt", "chosen", "rejected"):
            assert row[side].strip() and row[side].isascii(), (side, row)
        assert row["chosen"] != row["rejected"]
        assert row["chosen"] in row["rejected"]  # same facts, only padded
        assert 8 <= words(row["chosen"]) <= 30, row["chosen"]


def main() -> None:
    rows = build()
    check(rows)
    out = Path(__file__).resolve().parents[1] / "src" / "tunelab" / "resources" / "prefs_concise.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    facts = sum(len(f) for f in FACTS.values())
    print(f"wrote {len(rows)} preference pairs ({facts} facts) to {out}")


if __name__ == "__main__":
    main()
