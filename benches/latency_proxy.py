#!/usr/bin/env python3
"""A TCP proxy that adds a fixed delay before the first byte of each response: the round
trip a real S3 GET has (tens of ms) and a server on 127.0.0.1 does not. benches/s3_fetch.rs
puts it in front of moto_server when SPARKIFY_BENCH_LATENCY_MS is set.

    latency_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS
"""
import asyncio
import sys


async def pipe_requests(reader, writer, state):
    while data := await reader.read(65536):
        state["pending"] = True
        writer.write(data)
        await writer.drain()
    writer.close()


async def pipe_responses(reader, writer, state, delay):
    while data := await reader.read(65536):
        if state["pending"]:
            state["pending"] = False
            await asyncio.sleep(delay)
        writer.write(data)
        await writer.drain()
    writer.close()


async def main(listen, upstream, delay):
    async def handle(client_r, client_w):
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        state = {"pending": False}
        await asyncio.gather(
            pipe_requests(client_r, up_w, state),
            pipe_responses(up_r, client_w, state, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000))
