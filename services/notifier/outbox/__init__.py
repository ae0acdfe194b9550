"""The outbox: client messages between their decisions and their sending.

Every message waits here, in the partition's hash tag, until it is due (its
coalescing window closed, the client's quiet hours over); then exactly one
notifier claims it. See store.py for the keys and the two Lua steps.
"""
