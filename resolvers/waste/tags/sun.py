"""NTAG 424 DNA "Secure Unique NFC" (SUN) messages, AES mode, as NXP's AN12196 shows them.

On every read the tag mirrors into its NDEF URL two values:

- `picc_data`: AES-128-CBC (zero IV) with the SDM meta-read key of one block,
  PICCDataTag (0xC7: UID and read counter mirrored, 7-byte UID) ‖ UID (7) ‖
  SDMReadCtr (3, least significant byte first) ‖ 5 random padding bytes;
- `cmac`: SDMMAC, the 8 odd-indexed bytes of AES-CMAC(SesSDMFileReadMACKey, MAC input),
  the session key being AES-CMAC(SDM file-read key, SV2) with
  SV2 = 3CC3 0001 0080 ‖ UID ‖ SDMReadCtr. With nothing else mirrored the MAC input is
  empty (SDMMACInputOffset = SDMMACOffset).

Per-tag keys come from a master key by AN10922's AES-128 diversification. Only the
meta-read key is the same on every tag of a master (the hub needs it to learn the UID);
the file-read key, and so the CMAC, is the tag's own. All AES and CMAC is `cryptography`'s.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

PICC_DATA_TAG: Final = 0xC7  # UID mirrored, read counter mirrored, UID length 7
UID_BYTES: Final = 7
COUNTER_MAX: Final = 0xFFFFFF  # SDMReadCtr is 3 bytes
SV2_PREFIX: Final = bytes.fromhex("3CC300010080")
SYSTEM_IDENTIFIER: Final = b"ieum.waste"  # AN10922 diversification: who the keys are for
META_READ_KEY: Final = 1  # key numbers on the tag (0 is the application master key)
FILE_READ_KEY: Final = 2
KEYS_ON_TAG: Final = 5
_SHARED_UID: Final = bytes(UID_BYTES)  # diversification input of a key every tag shares
_ZERO_IV: Final = bytes(16)


@dataclass(frozen=True)
class PiccData:
    uid: bytes
    counter: int


def cmac(key: bytes, message: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def diversify(master: bytes, data: bytes) -> bytes:
    """AN10922 AES-128 diversification: CMAC over 0x01 ‖ data padded to two blocks.

    With 0x01 ‖ data longer than one block, as here, that is exactly AES-CMAC(master,
    0x01 ‖ data): CMAC pads a short final block with 80 00… and uses subkey K2, an exact
    one with K1, as AN10922 says. A shorter input would be padded to one block by CMAC but
    to two by AN10922, so it is refused.
    """
    if not 16 <= len(data) <= 31:
        raise ValueError("AN10922 diversification data here is 16 to 31 bytes")
    return cmac(master, b"\x01" + data)


def tag_key(master: bytes, uid: bytes, key_no: int) -> bytes:
    """Key `key_no` of the tag with `uid`: diversification data UID ‖ KeyNo ‖ "ieum.waste"."""
    return diversify(master, uid + bytes([key_no]) + SYSTEM_IDENTIFIER)


def meta_read_key(master: bytes) -> bytes:
    """The SDM meta-read key, the same on every tag of `master` (UID 00…00 in the data)."""
    return tag_key(master, _SHARED_UID, META_READ_KEY)


def tag_keys(master: bytes, uid: bytes) -> list[bytes]:
    """Keys 0–4 to write to the tag with `uid` at personalisation."""
    return [
        meta_read_key(master) if key_no == META_READ_KEY else tag_key(master, uid, key_no)
        for key_no in range(KEYS_ON_TAG)
    ]


def decrypt_picc(meta_key: bytes, picc_data: bytes) -> PiccData | None:
    """The UID and read counter, or None when this key did not encrypt `picc_data`."""
    decryptor = Cipher(algorithms.AES(meta_key), modes.CBC(_ZERO_IV)).decryptor()
    plain = decryptor.update(picc_data) + decryptor.finalize()
    if plain[0] != PICC_DATA_TAG:
        return None
    return PiccData(plain[1:8], int.from_bytes(plain[8:11], "little"))


def sdm_mac(file_key: bytes, uid: bytes, counter: int, mac_input: bytes = b"") -> bytes:
    """SDMMAC: the odd-indexed bytes of CMAC(SesSDMFileReadMACKey, `mac_input`)."""
    session_key = cmac(file_key, SV2_PREFIX + uid + counter.to_bytes(3, "little"))
    return cmac(session_key, mac_input)[1::2]


def mac_matches(file_key: bytes, picc: PiccData, mac: bytes) -> bool:
    return hmac.compare_digest(sdm_mac(file_key, picc.uid, picc.counter), mac)


def tap(meta_key: bytes, file_key: bytes, uid: bytes, counter: int) -> tuple[str, str]:
    """What a tag with these keys mirrors on its read number `counter`: (picc_data, cmac)
    in hex. The tag's side, for tests, benchmarks and demo data."""
    plain = bytes([PICC_DATA_TAG]) + uid + counter.to_bytes(3, "little") + secrets.token_bytes(5)
    encryptor = Cipher(algorithms.AES(meta_key), modes.CBC(_ZERO_IV)).encryptor()
    picc_data = encryptor.update(plain) + encryptor.finalize()
    return picc_data.hex().upper(), sdm_mac(file_key, uid, counter).hex().upper()


def from_url(url: str) -> tuple[str, str]:
    """(picc_data, cmac) from a SUN URL's query (`?picc_data=…&cmac=…`); empty if absent."""
    query = parse_qs(urlsplit(url).query)
    return query.get("picc_data", [""])[0], query.get("cmac", [""])[0]


def ndef_settings(tap_url: str) -> dict[str, object]:
    """How to set up a tag's NDEF file so that its URL carries the SUN message: the URL
    with zero placeholders, and the offsets for ChangeFileSettings. The file is NLEN (2
    bytes) ‖ one short URI record: D1 01 <length> 55 <prefix code> <rest of the URL>."""
    prefixes = {"https://": 0x04, "http://": 0x03}
    scheme = next(prefix for prefix in prefixes if tap_url.startswith(prefix))
    url = f"{tap_url}?picc_data={'0' * 32}&cmac={'0' * 16}"
    rest = url.removeprefix(scheme)
    if len(rest) + 1 > 255:
        raise ValueError("the tap URL is too long for a short NDEF record")
    start = 2 + 4 + 1  # NLEN, record header, URI prefix code
    mac_offset = start + rest.index("cmac=") + len("cmac=")
    return {
        "url": url,
        "uri_prefix_code": prefixes[scheme],
        "picc_data_offset": start + rest.index("picc_data=") + len("picc_data="),
        "sdmmac_offset": mac_offset,
        "sdmmac_input_offset": mac_offset,  # an empty MAC input
        "meta_read_key": META_READ_KEY,
        "file_read_key": FILE_READ_KEY,
    }
