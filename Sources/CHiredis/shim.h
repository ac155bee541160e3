// Thin shim over hiredis 0.14: the async event hooks are plain C function pointers.
#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

typedef void (*chiredis_ev_fn)(void *privdata);

/// Installs the event-library hooks hiredis calls to change read/write interest.
static inline void chiredis_attach(redisAsyncContext *ac, void *data,
                                   chiredis_ev_fn add_read, chiredis_ev_fn del_read,
                                   chiredis_ev_fn add_write, chiredis_ev_fn del_write,
                                   chiredis_ev_fn cleanup) {
    ac->ev.data = data;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
}

static inline int chiredis_fd(redisAsyncContext *ac) { return ac->c.fd; }
static inline int chiredis_err(redisAsyncContext *ac) { return ac->err; }
static inline const char *chiredis_errstr(redisAsyncContext *ac) { return ac->errstr; }
/// The connection's own error text: set before hiredis copies it to `ac->errstr`
/// (a failed connect reports through the connect callback before that copy).
static inline const char *chiredis_conn_errstr(redisAsyncContext *ac) { return ac->c.errstr; }

/// TCP keepalive on the connection's socket (idle 15 s, then probes): a Redis that vanished
/// without a reset (host gone, partition) turns into a socket error, so pending callbacks
/// fail instead of waiting forever.
static inline int chiredis_keepalive(redisAsyncContext *ac) { return redisEnableKeepAlive(&ac->c); }

/// Sends a command given as an argv of binary-safe strings.
static inline int chiredis_command_argv(redisAsyncContext *ac, redisCallbackFn *fn, void *privdata,
                                        int argc, const char **argv, const size_t *argvlen) {
    return redisAsyncCommandArgv(ac, fn, privdata, argc, argv, argvlen);
}

/// Every later reply on this connection goes to the callback now at the head of the reply
/// queue: hiredis 0.14 knows SUBSCRIBE but not SSUBSCRIBE, so sharded pub/sub messages would
/// find no callback. Its MONITOR mode re-queues the callback after each reply, which is what
/// a connection that only receives pushes needs. Call it with exactly one callback queued.
static inline void chiredis_route_all_replies(redisAsyncContext *ac) { ac->c.flags |= REDIS_MONITORING; }

/// Appends a command to the output buffer without queueing a callback (its reply goes to the
/// callback that `chiredis_route_all_replies` keeps at the head).
static inline int chiredis_append_argv(redisAsyncContext *ac, int argc, const char **argv, const size_t *argvlen) {
    return redisAppendCommandArgv(&ac->c, argc, argv, argvlen);
}
#endif
