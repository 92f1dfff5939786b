#!/usr/bin/python3
"""Summarises one run of lab/download-loop: when the web server's BBR left startup and what limited it.

Usage: download-samples.py DIR RUN  (reads DIR/server-RUN.log, DIR/client-RUN.log, DIR/nstat-RUN.log)
       download-samples.py FILE     (the web server's samples only, e.g. lab/test-lab's download-samples-1.log)

Prints, for the web server's socket: the time BBR left startup (first sample whose pacing gain is not the
startup gain), its bandwidth estimate then, the receive-window-limited time (rwnd_limited) and the
retransmitted segments (total) at that moment, the peer's window (snd_wnd) at the exit, when the first
retransmission and the first receive-window limit were seen (and BBR's bandwidth then); for the client's socket:
rcv_space at the exit and its out-of-order packets; and the download's retransmissions over the whole run.
An early exit (bandwidth well below the links' sum) after an early retransmission and a receive-window limit is
the mode described in docs/LAB.md, "When the 80 % check fails".
"""
import re
import sys

STARTUP_GAIN = 2.88


def samples(path):
    """Yields (time, info dict) for every sample of a socket in an `ss -tin` loop log."""
    stamp = None
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return
    for line in lines:
        if line.startswith('--- '):
            stamp = float(line[4:])
        elif line.startswith('\t') and stamp is not None:
            info = {}
            for key, value in re.findall(r'([a-z_]+)[:]([^ ]+)', line):
                info[key] = value
            bbr = re.search(r'bbr:\(bw:(\d+)bps,mrtt:([\d.]+),pacing_gain:([\d.]+)', line)
            if bbr:
                info['bbr_bw'] = int(bbr.group(1))
                info['pacing_gain'] = float(bbr.group(3))
            yield stamp, info


def number(info, key, default=0.0):
    value = info.get(key)
    if value is None:
        return default
    match = re.match(r'[\d.]+', value.split('/')[-1])
    return float(match.group(0)) if match else default


def main():
    if len(sys.argv) == 2:
        directory, run = None, None
        server, client = list(samples(sys.argv[1])), []
    else:
        directory, run = sys.argv[1], sys.argv[2]
        server = list(samples(f'{directory}/server-{run}.log'))
        client = list(samples(f'{directory}/client-{run}.log'))
    server = [(stamp, info) for stamp, info in server if 'pacing_gain' in info]
    if not server:
        print('no server samples')
        return
    start = server[0][0]
    exit_time, exit_info = None, None
    for stamp, info in server:
        if 'pacing_gain' in info and info['pacing_gain'] < STARTUP_GAIN:
            exit_time, exit_info = stamp, info
            break
    parts = []
    if exit_info is None:
        parts.append('startup>3s')
        exit_time, exit_info = server[-1]
    else:
        parts.append(f'exit {exit_time - start:.1f}s')
    parts.append(f'bw {exit_info.get("bbr_bw", 0) / 1e6:.0f}')
    parts.append(f'rwnd_lim {number(exit_info, "rwnd_limited"):.0f}ms')
    parts.append(f'retrans {number(exit_info, "retrans"):.0f}')
    parts.append(f'snd_wnd {number(exit_info, "snd_wnd") / 1000:.0f}K')
    first_retransmission = next(((stamp, info) for stamp, info in server if number(info, 'retrans') > 0), None)
    if first_retransmission:
        stamp, info = first_retransmission
        parts.append(f'1st retrans {stamp - start:.2f}s (bw {info.get("bbr_bw", 0) / 1e6:.0f})')
    first_limit = next((stamp for stamp, info in server if number(info, 'rwnd_limited') > 0), None)
    if first_limit is not None:
        parts.append(f'1st rwnd_lim {first_limit - start:.2f}s')
    # The client's socket at the exit (the sample nearest before it).
    before = [info for stamp, info in client if stamp <= exit_time]
    if before:
        info = before[-1]
        parts.append(f'c.rcv_space {number(info, "rcv_space") / 1000:.0f}K')
        parts.append(f'c.ooo {number(info, "rcv_ooopack"):.0f}')
    # Retransmissions over the whole download (web server's namespace).
    def counters(name):
        try:
            text = open(f'{directory}/{name}-{run}.log').read()
        except OSError:
            return {}
        values = {}
        for section in text.split('== ')[1:]:
            node, _, body = section.partition('\n')
            for key, value in re.findall(r'^(\w+)\s+(\d+)', body, re.M):
                values[f'{node}.{key}'] = int(value)
        return values
    before, after = (counters('nstat-before'), counters('nstat')) if directory else ({}, {})
    def delta(key):
        return after.get(key, 0) - before.get(key, 0)
    if after:
        parts.append(f'total retrans {delta("internet.TcpRetransSegs")}/{delta("internet.TcpOutSegs")}'
                     f' c.ofo {delta("client.TcpExtTCPOFOQueue")}')
    print(' '.join(parts))


main()
