"""Images in and out: attachments (check, download), decoding untrusted bytes, edit sources
and masks as sent, results fitted to the upload limit, and encoding under a byte budget.

Everything here is pure and synchronous except downloading. Decoding and encoding are
CPU-bound: callers run them off the event loop. No function here mutates Pillow's or the
warnings module's global state, because several may run at once on different threads.
"""
