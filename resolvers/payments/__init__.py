"""The payments domain: bills, terminals, card payments, refunds, ledger and reconciliation."""
