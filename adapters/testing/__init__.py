"""The contract kit: checks an installed adapter against its kind's contract, on its sandbox.

    pytest --pyargs adapters.testing.contract --ieum-adapter NAME

The `--ieum-adapter` option comes from the pytest plugin `adapters.testing.plugin`,
registered by the hub's package (entry point `pytest11`).
"""
