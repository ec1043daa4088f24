#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed one-way latency, in both directions.

    delay-proxy.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS [--ready FILE]

It stands in for netem's `delay`, which this machine's kernel lacks: each chunk read from one
side is written to the other side DELAY_MS after it arrived. Deliveries are scheduled at
arrival + delay (not by sleeping after each chunk), so a stream that is pipelined stays
pipelined: throughput is unchanged and each request/response turn costs 2 x DELAY_MS. A new
connection's first bytes reach the target no sooner than 3 x DELAY_MS after it was accepted,
as after TCP's handshake over the emulated link (TLS's handshake is not emulated). At most
BUFFER bytes wait per direction; beyond that the proxy stops reading, as a full link would.

The rate limit is not done here: bench/mirror.sh puts the server in a network namespace and
shapes the veth pair with tbf. Writes FILE (the listening port) once it accepts connections.
"""

import argparse
import asyncio
import os
import time

CHUNK = 64 * 1024
BUFFER = 4 * 1024 * 1024


async def pump(reader, writer, delay, not_before=0.0):
    queue = asyncio.Queue(maxsize=max(1, BUFFER // CHUNK))

    async def deliver():
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    break
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    task = asyncio.ensure_future(deliver())
    try:
        while not task.done():
            data = await reader.read(CHUNK)
            item = (max(time.monotonic() + delay, not_before), data or None)
            if queue.full():
                put = asyncio.ensure_future(queue.put(item))
                await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
                if not put.done():
                    put.cancel()
                    break
            else:
                queue.put_nowait(item)
            if not data:
                break
        await asyncio.wait({task})
    except (ConnectionError, OSError):
        pass
    finally:
        if not task.done():
            task.cancel()


async def handle(client_reader, client_writer, target, delay):
    # TCP's handshake: a real client can send its first byte one round trip after connect(),
    # and it reaches the server half a round trip later; here connect() returns at once.
    first_byte = time.monotonic() + 3 * delay
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            pump(client_reader, server_writer, delay, first_byte),
            pump(server_reader, client_writer, delay),
        )
    finally:
        for w in (server_writer, client_writer):
            try:
                w.close()
            except OSError:
                pass


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("listen", type=address)
    p.add_argument("target", type=address)
    p.add_argument("delay_ms", type=float)
    p.add_argument("--ready")
    a = p.parse_args()
    delay = a.delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, a.target, delay), a.listen[0], a.listen[1])
    port = server.sockets[0].getsockname()[1]
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(a.ready + ".tmp", a.ready)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
