"""The physio audit trail's readers: verify a client's hash chain (`verify`,
`chain`), decode entries (`codec`), read them from Redis (`reading`) and read them
as a timeline (`history`) or export it (`export`).

`verify` and `history` are pure (entries in, verdict or timeline out) so they
can be tested against thousands of tamperings in memory; `reading` is the only
module that talks to Redis. The web pages that present them live apart, in
`gatekeeper.physio_web`.
"""
