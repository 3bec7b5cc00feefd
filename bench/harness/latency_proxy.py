"""A TCP proxy on 127.0.0.1 that delays every byte by a fixed time in each direction, so a
run through it sees a round-trip time of twice the delay. It stands in for netem, which this
kernel lacks. Bytes keep their order and are not rate-limited: it models distance, not a slow
link.

Usage: python3 latency_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

It prints `ready` once it listens and runs until it is terminated.
"""

import asyncio
import sys


async def pump(reader, writer, delay):
    """Copy reader to writer, each chunk written `delay` seconds after it was read.

    A reading task and a writing task share a queue, so a chunk that arrives while an earlier
    one waits is timed from its own arrival, as on a real link.
    """
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read_side():
        while True:
            chunk = await reader.read(65536)
            await queue.put((loop.time() + delay, chunk))
            if not chunk:
                return

    async def write_side():
        while True:
            due, chunk = await queue.get()
            pause = due - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    try:
        await asyncio.gather(read_side(), write_side())
    except (ConnectionError, OSError):
        pass


async def serve(listen_port, target_port, delay):
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError as error:
            print(f"latency proxy: connecting to port {target_port} failed: {error}", file=sys.stderr)
            client_writer.close()
            return
        try:
            await asyncio.gather(
                pump(client_reader, server_writer, delay),
                pump(server_reader, client_writer, delay),
            )
        finally:
            client_writer.close()
            server_writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    listen_port, target_port, delay_ms = (int(word) for word in sys.argv[1:])
    asyncio.run(serve(listen_port, target_port, delay_ms / 1000))


if __name__ == "__main__":
    main()
