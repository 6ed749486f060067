#!/usr/bin/env python3
"""Writes the fast path targets' seed packets (decrypted RTCP and RTP, as the fast path reads them).

Layouts: RTCP RFC 3550 §6.4; transport-wide feedback draft-holmer-rmcat-transport-wide-cc-extensions-01
§3.1; NACK and PLI RFC 4585 §6.2.1/§6.3.1; FIR RFC 5104 §4.3.1; REMB draft-alvestrand-rmcat-remb-03;
RTP RFC 3550 §5.1 with RFC 8285 header extensions. Run from this directory; the output is committed.
"""
import os
import struct


def rtcp(fmt, pt, body):
    assert len(body) % 4 == 0
    return struct.pack("!BBH", 0x80 | fmt, pt, len(body) // 4) + body


def pad4(b):
    return b + bytes((-len(b)) % 4)


ssrcs = struct.pack("!II", 0x11111111, 0x22222222)
# Transport-wide feedback: 10 packets received 1 ms apart (one run-length chunk of "small delta").
twcc_run = rtcp(15, 205, ssrcs + struct.pack("!HHI", 0, 10, (1 << 8) | 0) + struct.pack("!H", 0x200A) + bytes([4] * 10))
# A two-bit status vector chunk: small, large, lost, small, small, large, small.
vector = struct.pack("!HHI", 10, 7, (2 << 8) | 1) + struct.pack("!H", 0xD859)
vector += bytes([4]) + struct.pack("!h", -8) + bytes([4, 4]) + struct.pack("!h", 400) + bytes([4])
twcc_vector = rtcp(15, 205, ssrcs + pad4(vector))
nack = rtcp(1, 205, ssrcs + struct.pack("!HH", 5, 0x0003))
pli = rtcp(1, 206, ssrcs)
fir = rtcp(4, 206, ssrcs[:4] + bytes(4) + struct.pack("!IB3x", 0x33333333, 7))
remb = rtcp(15, 206, ssrcs[:4] + bytes(4) + b"REMB" + bytes([1, 3 << 2, 0x12, 0x34]) + struct.pack("!I", 0x33333333))
receiver_report = rtcp(0, 201, ssrcs[:4])
rtcp_seeds = {
    "twcc-run": twcc_run, "twcc-vector": twcc_vector, "nack": nack, "pli": pli, "fir": fir, "remb": remb,
    "compound": receiver_report + twcc_run + twcc_vector + nack + pli + fir + remb,
}


def rtp(first, pt, ext=b"", payload=b"\x01" * 20):
    return struct.pack("!BBHII", first, pt, 1234, 90000, 0x44444444) + ext + payload


# One-byte form (0xBEDE): MID "0" (id 1), RID "h" (2), transport-wide seq (4), audio level (5).
one = pad4(bytes([0x10]) + b"0" + bytes([0x20]) + b"h" + bytes([0x41, 0x00, 0x05, 0x50, 0x85]))
one_byte = struct.pack("!HH", 0xBEDE, len(one) // 4) + one
# Two-byte form (0x100x): MID, RID "f", transport-wide seq, orientation (13), content type (15).
two = pad4(bytes([1, 1]) + b"0" + bytes([2, 1]) + b"f" + bytes([4, 2, 0, 9, 13, 1, 1, 15, 1, 1]))
two_byte = struct.pack("!HH", 0x1000, len(two) // 4) + two
rtp_seeds = {
    "one-byte-ext": rtp(0x90, 111, one_byte),
    "two-byte-ext": rtp(0x90, 0x80 | 96, two_byte),
    "padded": rtp(0xB0, 96, one_byte, b"\x02" * 20 + bytes([0, 0, 3])),
    "plain": rtp(0x80, 111),
    "csrc": rtp(0x92, 111, bytes(8) + one_byte),
}

for target, seeds in (("fastpath_rtcp", rtcp_seeds), ("fastpath_rtp", rtp_seeds)):
    os.makedirs(target, exist_ok=True)
    for name, packet in seeds.items():
        with open(f"{target}/{name}.bin", "wb") as f:
            f.write(packet)
