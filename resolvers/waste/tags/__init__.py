"""Bin tags that cannot be forged or usefully copied: signed QR labels (`qr`) and NTAG 424
DNA NFC tags (`sun`), their keys (`keys`), issuing (`issue`) and checking (`verify`).
docs/waste-tags.md explains them."""
