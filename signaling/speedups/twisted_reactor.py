"""Two hot paths of Twisted's asyncio reactor, made cheaper under Daphne.

Upstream: Twisted 26.10.0 (``twisted/internet/tcp.py``,
``twisted/internet/asyncioreactor.py``).
Touches: ``tcp.Connection.write`` (replaced for plain TCP on the asyncio
reactor; reads ``_tempDataBuffer``, ``_tempDataLen``, ``dataBuffer``,
``offset``, ``_writeDisconnected``, ``_maybePauseProducer``),
``AsyncioSelectorReactor.addReader``/``addWriter`` (Twisted 26.10.0's,
registering ``_readOrWrite`` directly; reads ``_readers``, ``_writers``,
``_continuousPolling``, ``_asyncioEventloop``,
``_unregisterFDInAsyncio``).

Both are behaviour preserving: the same bytes reach the same sockets in the same order, and the
same errors end the same connections.

1. Writes. A Twisted TCP transport never sends in ``write()``: it buffers
   the bytes and registers the socket for writability, the reactor wakes up
   on the next loop turn, sends, and unregisters it again. Through asyncio's
   selector that is two ``epoll_ctl`` calls per reply. Here the buffered bytes are sent from one callback at the end of
   the loop turn, without asking the selector; only what the kernel does
   not take waits for writability as before. (Sending inside ``write()``
   was tried: one ``send`` per frame instead of one per socket and turn
   cost more than it saved when relaying.)

2. Event dispatch. Each readiness event runs through
   ``log.callWithLogger``, which builds a log context (a dict and three
   calls) for the legacy logging system. Here the reactor's own handler is
   called directly, still logging anything that escapes it.
"""

from __future__ import annotations

import sys

_PATCHED = "_signaling_patched"

UPSTREAM = {"twisted": "26.10.0"}
TOUCHES = (
    "twisted.internet.tcp.Connection.write",
    "twisted.internet.asyncioreactor.AsyncioSelectorReactor.addReader",
    "twisted.internet.asyncioreactor.AsyncioSelectorReactor.addWriter",
    "twisted.internet.asyncioreactor.AsyncioSelectorReactor._readOrWrite",
)


def apply() -> None:
    """Patch the running Twisted, if it is there (Daphne); else do nothing."""
    tcp = sys.modules.get("twisted.internet.tcp")
    if tcp is not None and not getattr(tcp.Connection, _PATCHED, False):
        _send_writes_at_once(tcp.Connection)
    asyncioreactor = sys.modules.get("twisted.internet.asyncioreactor")
    if asyncioreactor is not None:
        reactor_class = asyncioreactor.AsyncioSelectorReactor
        if not getattr(reactor_class, _PATCHED, False):
            _dispatch_events_directly(reactor_class)


def _send_writes_at_once(connection_class) -> None:
    from twisted.python import log

    buffered_write = connection_class.write
    # Connections with bytes to send at the end of this loop turn (a dict:
    # ordered, and no flag on each transport, whose attribute dictionary
    # would grow by ~800 bytes for it).
    pending: dict = {}

    def flush() -> None:
        connections = list(pending)
        pending.clear()
        for connection in connections:
            reactor = connection.reactor
            if not connection.connected or connection in reactor._writers:
                # Gone, or the reactor is already waiting to write it.
                continue
            # What the reactor would do once the socket is writable: send,
            # and end the connection if that failed or it was closing.
            try:
                reactor._readOrWrite(connection, False)
            except Exception:
                log.err(system=_log_prefix(connection))
                continue
            if connection.connected and (
                connection._tempDataLen or connection.offset < len(connection.dataBuffer)
            ):
                # The kernel took only part: wait for writability as usual.
                connection.startWriting()

    def write(self, data):
        if self.TLS or self.disconnecting or not hasattr(self.reactor, "_asyncioEventloop"):
            buffered_write(self, data)
            return
        if not data or not self.connected or self._writeDisconnected:
            return
        self._tempDataBuffer.append(data)
        self._tempDataLen += len(data)
        self._maybePauseProducer()
        if self in pending or self in self.reactor._writers:
            return
        # Replies written in this loop turn go out together at its end.
        if not pending:
            self.reactor._asyncioEventloop.call_soon(flush)
        pending[self] = None

    connection_class.write = write
    setattr(connection_class, _PATCHED, True)


def _dispatch_events_directly(reactor_class) -> None:
    from twisted.python import log

    read_or_write = reactor_class._readOrWrite

    def dispatch(self, selectable, read):
        try:
            read_or_write(self, selectable, read)
        except KeyboardInterrupt:
            raise
        except BaseException:
            # What callWithLogger did: log and carry on serving the others.
            log.err(system=_log_prefix(selectable))

    def registration(add_to_loop: str, registry: str, read: bool, twisted_own):
        # The reactor's addReader/addWriter, registering ``dispatch``.
        def register(self, selectable):
            registered = getattr(self, registry)
            if selectable in registered or selectable in getattr(
                self._continuousPolling, registry
            ):
                return
            fd = selectable.fileno()
            try:
                getattr(self._asyncioEventloop, add_to_loop)(fd, dispatch, self, selectable, read)
                registered[selectable] = fd
            except OSError:
                # epoll refuses some descriptors (EPERM): Twisted's own code
                # knows how to poll those instead.
                self._unregisterFDInAsyncio(fd)
                twisted_own(self, selectable)

        return register

    reactor_class.addReader = registration("add_reader", "_readers", True, reactor_class.addReader)
    reactor_class.addWriter = registration("add_writer", "_writers", False, reactor_class.addWriter)
    setattr(reactor_class, _PATCHED, True)


def _log_prefix(selectable) -> str:
    try:
        return selectable.logPrefix()
    except Exception:
        return "(buggy logPrefix method)"
