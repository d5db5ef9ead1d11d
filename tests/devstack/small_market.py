"""A one-store, one-item market file (devstack/market/market_file.py's TOML) for the market
simulator and supply CLI tests to parse, run and vary."""

SMALL = """
[cycle]
cutoff = "22:00"

[simulation]
warmup_days = 14

[[stores]]
id = "A"
fridge_capacity = 50.0
pickup_capacity = 10
zone = "z"

[[items]]
id = "milk"
shelf_life_days = 2
case_pack = 12
unit_volume = 1.0
cost = 500
price = 800
chilled = true
walk_in_per_day = 3.0
preorder_per_day = 1.0
"""
