"""Word lists behind the retail generator (lowercase, no punctuation: voice style).

Products and brands are grouped by category so that a generated "brand product" pair makes
sense ("nike running shoes", not "nike bananas"). Every list has a held-out twin (``UNSEEN_*``)
that shares no entry with it: a model trained on the default lists meets those names for the
first time when the generator is asked for unseen products or names.

``AMBIGUOUS_NAMES`` are surfaces that are a brand in one utterance and a person in another
("add two jordan sneakers" vs "is jordan on shift tomorrow"); they sit in both ``BRANDS`` and
``PEOPLE_FIRST``/``PEOPLE_LAST`` on purpose.
"""

from __future__ import annotations

AMBIGUOUS_NAMES: tuple[str, ...] = ("jordan", "hunter", "wilson", "sebastian", "burton", "carter")

#: Which optional attributes make sense for a category (a blue banana in size ten does not).
CATEGORY_ATTRIBUTES: dict[str, frozenset[str]] = {
    "apparel": frozenset({"color", "size"}),
    "footwear": frozenset({"color", "size"}),
    "grocery": frozenset(),
    "electronics": frozenset({"color"}),
    "home": frozenset({"color"}),
    "beauty": frozenset(),
    "sports": frozenset({"color", "size"}),
    "toys": frozenset({"color"}),
}

PRODUCTS: dict[str, tuple[str, ...]] = {
    "apparel": (
        "hoodie", "hoodies", "t shirt", "t shirts", "jeans", "skinny jeans", "denim jacket", "rain jacket",
        "winter coat", "puffer jacket", "sweater", "cardigan", "polo shirt", "dress shirt", "leggings",
        "joggers", "sweatpants", "shorts", "cargo shorts", "socks", "ankle socks", "beanie", "baseball cap",
        "scarf", "gloves", "pajamas", "swim trunks", "tank top", "blouse", "summer dress", "khakis",
    ),
    "footwear": (
        "sneakers", "running shoes", "basketball shoes", "boots", "rain boots", "hiking boots", "sandals",
        "flip flops", "slippers", "loafers", "high tops", "trail runners", "work boots", "slides",
        "walking shoes", "cleats", "dress shoes", "snow boots",
    ),
    "grocery": (
        "milk", "almond milk", "oat milk", "eggs", "bread", "sourdough bread", "bagels", "butter",
        "greek yogurt", "cheddar cheese", "bananas", "apples", "avocados", "strawberries", "baby spinach",
        "chicken breast", "ground beef", "salmon fillets", "pasta", "spaghetti", "rice", "brown rice",
        "peanut butter", "orange juice", "coffee", "ground coffee", "coffee pods", "green tea", "cereal",
        "granola bars", "potato chips", "tortilla chips", "salsa", "frozen pizza", "ice cream", "olive oil",
        "paper towels", "toilet paper", "dish soap", "laundry detergent", "trash bags", "sparkling water",
        "bottled water", "diapers", "baby wipes", "dog food", "cat litter", "canned tuna", "oatmeal",
    ),
    "electronics": (
        "headphones", "wireless earbuds", "bluetooth speaker", "laptop", "gaming laptop", "tablet",
        "phone charger", "usb cable", "power bank", "smart watch", "fitness tracker", "tv", "smart tv",
        "soundbar", "hdmi cable", "webcam", "keyboard", "gaming mouse", "monitor", "printer", "ink cartridges",
        "memory card", "video game", "game controller", "phone case", "screen protector", "smart speaker",
        "robot vacuum", "electric toothbrush", "hair dryer",
    ),
    "home": (
        "bath towels", "bed sheets", "pillow", "throw blanket", "comforter", "shower curtain", "desk lamp",
        "floor lamp", "coffee maker", "toaster", "blender", "air fryer", "frying pan", "cookware set",
        "knife set", "dinner plates", "coffee mug", "storage bins", "laundry basket", "vacuum cleaner",
        "picture frame", "candles", "area rug", "curtains", "office chair", "bookshelf", "mattress pad",
        "water filter", "light bulbs", "extension cord",
    ),
    "beauty": (
        "shampoo", "conditioner", "body wash", "face wash", "moisturizer", "sunscreen", "lip balm",
        "mascara", "lipstick", "foundation", "nail polish", "deodorant", "toothpaste", "razors",
        "shaving cream", "hand soap", "lotion", "hair gel", "dry shampoo", "makeup remover",
    ),
    "sports": (
        "yoga mat", "dumbbells", "basketball", "soccer ball", "tennis racket", "tennis balls", "water bottle",
        "gym bag", "bike helmet", "resistance bands", "jump rope", "camping tent", "sleeping bag",
        "golf balls", "snowboard", "ski goggles", "football", "baseball glove",
    ),
    "toys": (
        "lego set", "board game", "puzzle", "action figure", "stuffed animal", "doll house", "toy car",
        "remote control car", "building blocks", "play dough", "card game", "kids bike", "scooter",
        "water gun", "train set",
    ),
}

UNSEEN_PRODUCTS: dict[str, tuple[str, ...]] = {
    "apparel": ("windbreaker", "fleece vest", "corduroy pants", "turtleneck", "overalls", "kimono", "bomber jacket"),
    "footwear": ("espadrilles", "clogs", "mary janes", "wader boots", "moccasins", "platform heels"),
    "grocery": (
        "kombucha", "kimchi", "quinoa", "tempeh", "sauerkraut", "matcha powder", "plantains", "jackfruit",
        "ghee", "dragon fruit", "oat bran", "coconut aminos",
    ),
    "electronics": ("drone", "e reader", "dash cam", "vr headset", "label maker", "mesh router", "projector"),
    "home": ("dutch oven", "weighted blanket", "bread maker", "humidifier", "ottoman", "spice rack", "bidet seat"),
    "beauty": ("serum", "toner", "bronzer", "eyelash curler", "beard oil", "face mask sheets"),
    "sports": ("kettlebell", "paddle board", "pickleball paddle", "climbing harness", "foam roller"),
    "toys": ("kite", "slime kit", "marble run", "magnetic tiles", "pogo stick"),
}

BRANDS: dict[str, tuple[str, ...]] = {
    "apparel": ("levis", "gap", "old navy", "champion", "columbia", "patagonia", "hanes", "carter", "wrangler"),
    "footwear": ("nike", "adidas", "jordan", "new balance", "converse", "vans", "hunter", "skechers", "timberland"),
    "grocery": ("great value", "kirkland", "horizon", "chobani", "tropicana", "folgers", "kelloggs", "lays",
                "tide", "bounty", "charmin", "barilla", "pampers"),
    "electronics": ("apple", "samsung", "sony", "bose", "jbl", "logitech", "lenovo", "hp", "anker", "fitbit"),
    "home": ("keurig", "cuisinart", "ninja", "dyson", "shark", "pyrex", "threshold", "oxo"),
    "beauty": ("dove", "olay", "cerave", "neutrogena", "loreal", "maybelline", "sebastian", "gillette", "colgate"),
    "sports": ("wilson", "spalding", "under armour", "coleman", "burton", "callaway", "rawlings"),
    "toys": ("lego", "hasbro", "mattel", "fisher price", "hot wheels", "melissa and doug", "nerf"),
}

UNSEEN_BRANDS: dict[str, tuple[str, ...]] = {
    "apparel": ("uniqlo", "everlane", "carhartt"),
    "footwear": ("hoka", "on running", "birkenstock"),
    "grocery": ("oatly", "siggi", "kerrygold", "tillamook"),
    "electronics": ("anbernic", "razer", "garmin"),
    "home": ("le creuset", "smeg", "breville"),
    "beauty": ("glossier", "the ordinary", "drunk elephant"),
    "sports": ("yeti", "hydro flask", "selkirk"),
    "toys": ("magformers", "schleich", "playmobil"),
}

PEOPLE_FIRST: tuple[str, ...] = (
    "jordan", "hunter", "sebastian", "carter", "maria", "james", "olivia", "noah", "emma", "liam", "sophia",
    "mason", "ava", "ethan", "mia", "lucas", "isabella", "logan", "amelia", "elijah", "harper", "aiden",
    "ella", "daniel", "grace", "david", "chloe", "jose", "priya", "wei", "fatima", "omar", "aisha", "carlos",
    "lucia", "mohammed", "nina", "tyler", "brandon", "kayla", "jasmine", "marcus", "tanya", "derek", "kim",
    "rosa", "luis", "angela", "kevin", "megan", "sam", "alex", "taylor", "chris", "pat", "jamal", "tiffany",
)

PEOPLE_LAST: tuple[str, ...] = (
    "wilson", "burton", "smith", "johnson", "garcia", "nguyen", "patel", "brown", "lee", "martinez", "davis",
    "lopez", "clark", "lewis", "walker", "young", "hernandez", "king", "wright", "scott", "green", "baker",
    "adams", "nelson", "hill", "rivera", "campbell", "mitchell", "roberts", "kim",
)

UNSEEN_PEOPLE_FIRST: tuple[str, ...] = (
    "ingrid", "tobias", "yusuf", "svetlana", "kwame", "bartholomew", "xiomara", "anouk", "thaddeus", "ngozi",
    "leif", "rhiannon", "ignatius", "oksana", "zebulon", "marisol", "caspian", "imelda", "desmond", "zainab",
)

UNSEEN_PEOPLE_LAST: tuple[str, ...] = (
    "okonkwo", "lindqvist", "vasquez", "takahashi", "oyelaran", "kowalczyk", "delacroix", "haugen", "mbeki",
    "fitzgerald",
)

STORES: tuple[str, ...] = (
    "downtown", "riverside", "elm street", "north park", "westfield mall", "airport road", "main street",
    "lakeview", "oak hill", "south end", "harbor point", "maple avenue", "eastgate", "union square",
    "pine ridge", "cedar grove", "brookfield", "midtown", "college avenue", "highland park", "bayshore",
    "fairview", "granite falls", "sunset boulevard", "old town",
)

DEPARTMENTS: tuple[str, ...] = (
    "produce", "electronics", "garden center", "pharmacy", "bakery", "deli", "home goods", "toys",
    "sporting goods", "shoes", "menswear", "womens clothing", "kids clothing", "hardware", "automotive",
    "pet supplies", "frozen foods", "dairy", "health and beauty", "seasonal", "customer service",
    "receiving", "meat and seafood", "baby", "housewares",
)

COLORS: tuple[str, ...] = (
    "black", "white", "red", "blue", "navy", "green", "olive", "grey", "gray", "pink", "purple", "yellow",
    "orange", "brown", "beige", "tan", "silver", "gold", "light blue", "dark green", "burgundy", "teal",
)

SIZES: tuple[str, ...] = (
    "small", "medium", "large", "extra large", "extra small", "xl", "xxl", "size ten", "size 9", "size eight",
    "nine and a half", "size twelve", "kids small", "youth large", "size 11", "thirty two waist", "size 7",
)

NUMBER_WORDS: tuple[str, ...] = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)

DIGIT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

QUANTITY_PHRASES: tuple[str, ...] = ("a", "a couple of", "a dozen", "a few", "a pair of", "a case of", "a box of")

DATE_TIMES: tuple[str, ...] = (
    "today", "tomorrow", "tonight", "this weekend", "next week", "monday", "tuesday", "wednesday", "thursday",
    "friday", "saturday", "sunday", "next monday", "next friday", "saturday morning", "sunday afternoon",
    "friday night", "tomorrow morning", "tomorrow at nine", "three pm", "5 pm", "noon", "this evening",
    "the fourth", "july fourth", "christmas eve", "new years day", "the twenty first", "7 am",
    "six thirty", "yesterday", "last tuesday", "this morning", "monday at eight", "the weekend",
)

PRICES: tuple[str, ...] = (
    "nine ninety nine", "twelve dollars", "five bucks", "twenty dollars", "three fifty", "19 dollars",
    "ninety nine cents", "forty nine ninety nine", "a dollar", "two for five", "fifteen dollars", "seven 99",
    "half off", "ten percent off", "one twenty", "29 99", "six dollars and fifty cents",
)

#: ASR confusions: each word may be heard as one of these (homophones and near-homophones).
HOMOPHONES: dict[str, tuple[str, ...]] = {
    "to": ("two", "too"), "two": ("to", "too"), "too": ("to", "two"), "for": ("four",), "four": ("for",),
    "there": ("their",), "their": ("there",), "buy": ("by", "bye"), "by": ("buy",), "eight": ("ate",),
    "one": ("won",), "no": ("know",), "know": ("no",), "new": ("knew",), "sale": ("sail",), "aisle": ("isle", "ill"),
    "where": ("wear",), "wear": ("where",), "our": ("hour",), "hour": ("our",), "pair": ("pear",), "pear": ("pair",),
    "right": ("write",), "red": ("read",), "week": ("weak",), "whole": ("hole",), "cereal": ("serial",),
    "flour": ("flower",), "shoes": ("shoos",), "jeans": ("genes",), "need": ("knead",), "store": ("stor",),
    "my": ("mi",), "add": ("ad",), "cart": ("card", "car"), "shift": ("ship",), "stock": ("stalk",),
}

FILLERS: tuple[str, ...] = ("um", "uh", "er", "hmm", "uhm")

#: Phrases that mark a frustrated user. ``FRUSTRATION_WORDS`` occur only in these cues, in no template or list.
FRUSTRATION_PREFIXES: tuple[str, ...] = (
    "ugh", "seriously", "come on seriously", "for the third time", "i already asked", "ugh again", "this is ridiculous",
)
FRUSTRATION_SUFFIXES: tuple[str, ...] = (
    "again", "this is ridiculous", "still nothing", "third time asking", "why is this still so hard",
    "asked already", "still", "for crying out loud", "seriously",
)
FRUSTRATION_WORDS: frozenset[str] = frozenset(
    {"ugh", "seriously", "third", "again", "ridiculous", "still", "crying", "already"}
)
