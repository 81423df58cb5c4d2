"""Everything that talks to LiveVox or decides what its answers mean.

- ``client``: ``LiveVoxClient``, the calls appendq makes (search, Append, transactionList).
- ``session``: the session as an httpx auth flow (log in, resend a read once after a 401).
- ``wire``: the payloads, read at the edge (``Campaign``, ``Transaction``, pages, paths).
- ``classify``: what an answer or a transport failure means (the ``appendq.errors`` classes).
- ``campaigns``: which campaign a target's records go to today; ``ratelimit``: the Append slots.
"""
