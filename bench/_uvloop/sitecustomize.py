"""Put on PYTHONPATH by bench/event_loop.py: every asyncio.run in this Python process (Watchword's serve,
and each worker it starts) runs on uvloop instead of asyncio's own loop. For benchmarks only."""

import asyncio

import uvloop

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
