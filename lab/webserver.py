#!/usr/bin/python3
"""The lab's "internet" web server: Python's http.server plus single byte ranges (RFC 9110
section 14), so a download can be split across uplinks and resumed after a failover.

usage: webserver.py DIRECTORY PORT [CONGESTION_CONTROL]   (listens on all IPv4 and IPv6 addresses)

CONGESTION_CONTROL (e.g. bbr, cubic) is set on the listening socket, which accepted connections inherit,
so the lab's downloads don't depend on the host's default.
"""
import http.server
import os
import re
import shutil
import socket
import sys

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_head(self):
        self.byte_range = None
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if header is None or not os.path.isfile(path):
            return super().send_head()
        match = RANGE.match(header.strip())
        size = os.path.getsize(path)
        if not match or (match.group(1) == "" and match.group(2) == ""):
            self.send_error(416, "only one range of the form bytes=FIRST-LAST is supported")
            return None
        if match.group(1) == "":
            first, last = max(size - int(match.group(2)), 0), size - 1
        else:
            first = int(match.group(1))
            last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
        if first > last or first >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        stream = open(path, "rb")
        stream.seek(first)
        self.byte_range = (first, last)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return stream

    def copyfile(self, source, outputfile):
        if self.byte_range is None:
            return shutil.copyfileobj(source, outputfile, 1 << 16)
        remaining = self.byte_range[1] - self.byte_range[0] + 1
        while remaining > 0:
            chunk = source.read(min(remaining, 1 << 16))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)

    def log_message(self, format, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


class DualStackServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    congestion_control = None

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if self.congestion_control:
            try:
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, self.congestion_control.encode())
            except OSError as error:
                sys.exit(f"cannot use TCP congestion control '{self.congestion_control}': {error} "
                         f"(available: /proc/sys/net/ipv4/tcp_available_congestion_control; set LAB_TCP_CC)")
        super().server_bind()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    directory, port = sys.argv[1], int(sys.argv[2])
    DualStackServer.congestion_control = sys.argv[3] if len(sys.argv) == 4 else None

    def handler(*args, **kwargs):
        return RangeRequestHandler(*args, directory=directory, **kwargs)

    with DualStackServer(("::", port), handler) as server:
        print(f"serving {directory} on port {port} (congestion control: "
              f"{DualStackServer.congestion_control or 'host default'})", file=sys.stderr, flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
