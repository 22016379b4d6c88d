#!/usr/bin/python3
"""Compares the messages each NATS server of a kept fault-test run stores for one stream.

  /usr/bin/python3 tests/cluster/stream_diff.py DIR [STREAM] [--find TEXT]

DIR is a folder kept by `cluster_test.py --keep` or `cluster_api_test.py --keep` (it holds
nats1/, nats2/, nats3/); STREAM a shard's stream (FATHOM_<gen>_<shard>; all of them when left
out). For each stream it prints, per server, how many messages its block files hold and their
sequence range, then the first sequence at which two servers hold different messages (with the
messages around it), or that they agree. --find TEXT lists the sequence of every message whose
body holds TEXT (a point id, say) on each server.

JetStream replicates a stream by RAFT, so every server must hold the same message at the same
sequence; a replica applies the message at its next sequence from whichever server serves its
consumer, so servers that disagree make replicas diverge. This reads the file store directly
(nats-server 2.9's block format: record length, sequence, timestamp, subject, headers, body,
hash), so it works on a stopped cluster. Records in a block that the server has since deleted
(purged, or removed by limits) may still be listed.
"""
import argparse
import glob
import os
import struct
import sys

HEADERS_BIT = 1 << 31
ERASED_BIT = 1 << 63


def read_blocks(stream_dir):
    """{sequence: (headers, body)} of every record in the stream's block files."""
    out = {}
    for path in sorted(glob.glob(os.path.join(stream_dir, "msgs", "*.blk")),
                       key=lambda p: int(os.path.basename(p).split(".")[0])):
        data = open(path, "rb").read()
        i = 0
        while i + 22 <= len(data):
            length, seq, _ts, subject_len = struct.unpack_from("<IQqH", data, i)
            has_headers = length & HEADERS_BIT
            length &= ~HEADERS_BIT
            seq &= ~ERASED_BIT
            if length < 22 or i + length > len(data):
                break
            j = i + 22 + subject_len
            headers = b""
            if has_headers:
                (headers_len,) = struct.unpack_from("<I", data, j)
                headers = data[j + 4:j + 4 + headers_len]
                j += 4 + headers_len
            out[seq] = (headers, data[j:i + length - 8])
            i += length
    return out


def short(record, width=90):
    if record is None:
        return "-"
    headers, body = record
    msg_id = ""
    for line in headers.split(b"\r\n"):
        if line.lower().startswith(b"nats-msg-id:"):
            msg_id = line.split(b":", 1)[1].strip().decode(errors="replace")
    return "%s %s" % (msg_id, body[:width].decode(errors="replace"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir")
    parser.add_argument("stream", nargs="?")
    parser.add_argument("--find", help="list the sequences of messages whose body holds this text")
    args = parser.parse_args()
    servers = sorted(d for d in os.listdir(args.dir)
                     if d.startswith("nats") and os.path.isdir(os.path.join(args.dir, d, "jetstream")))
    if not servers:
        sys.exit("stream_diff: no nats*/jetstream folders in %s" % args.dir)
    streams = set()
    for s in servers:
        for path in glob.glob(os.path.join(args.dir, s, "jetstream", "*", "streams", "FATHOM_*")):
            streams.add(os.path.basename(path))
    if args.stream:
        streams &= {args.stream}
    if not streams:
        sys.exit("stream_diff: no such stream in %s" % args.dir)
    differ = 0
    for stream in sorted(streams):
        stored = {}
        for s in servers:
            found = glob.glob(os.path.join(args.dir, s, "jetstream", "*", "streams", stream))
            stored[s] = read_blocks(found[0]) if found else {}
        print("%s:" % stream)
        for s in servers:
            seqs = stored[s]
            print("  %s: %d messages, sequences %s" % (
                s, len(seqs), "%d..%d" % (min(seqs), max(seqs)) if seqs else "none"))
            if args.find:
                hits = [seq for seq, (_h, body) in sorted(seqs.items()) if args.find.encode() in body]
                print("    '%s' at %s" % (args.find, hits[-10:]))
        # Compare where both servers hold a message (purged ranges differ legitimately).
        first = None
        for a in servers:
            for b in servers:
                if a >= b:
                    continue
                for seq in sorted(set(stored[a]) & set(stored[b])):
                    if stored[a][seq][1] != stored[b][seq][1]:
                        if first is None or seq < first[0]:
                            first = (seq, a, b)
                        break
        if first is None:
            print("  the servers agree on every sequence they both hold")
            continue
        differ += 1
        seq, a, b = first
        print("  FIRST DIFFERENCE at sequence %d (%s and %s):" % (seq, a, b))
        for t in range(seq - 2, seq + 3):
            for s in servers:
                print("    %d %-6s %s" % (t, s, short(stored[s].get(t))))
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
