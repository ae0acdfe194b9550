"""The physio audit trail: verify a client's hash chain, read it as a timeline,
and serve it to physios over HTTP.

`verify` and `history` are pure (entries in, verdict or timeline out) so they
can be tested against thousands of tamperings in memory; `reading` is the only
module that talks to Redis, and `http` / `pages` only present what it read.
"""
