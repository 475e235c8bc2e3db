"""The floor under `smtp-checks check`: the same SMTP login by a bare Python script.

Connect, read the banner, EHLO, QUIT, print one plugin line: `socket` and nothing else of
ours or of the standard library's heavier modules. Timing it as a process (farm-bench, see
BENCHMARKS.md) shows what any Python CLI pays before its own imports: the interpreter's
start-up and this one socket session.

Usage: python bench/cli_floor.py PORT   (a server on 127.0.0.1:PORT; not `-m`, which would
import the `bench` package first)
"""

import socket
import sys


def main() -> int:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as connection:
        replies = connection.makefile("rb")

        def reply() -> bytes:
            while True:
                line = replies.readline()
                if line[3:4] != b"-":
                    return line

        reply()
        for command in (b"EHLO floor\r\n", b"QUIT\r\n"):
            connection.sendall(command)
            reply()
    print("OK: SMTP login | time=0.001s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
