// Thin shim over libev 4 (Debian's libev-dev ships no pkg-config file): the loop lws' evlib_ev
// plugin runs on, and the macros Swift cannot import.
#ifndef CLIBEV_SHIM_H
#define CLIBEV_SHIM_H
#include <ev.h>

/// epoll, named explicitly: libev 4.33 also knows Linux AIO and io_uring, and EVFLAG_NOENV keeps
/// LIBEV_FLAGS in the environment from choosing for us.
static inline struct ev_loop *clibev_epoll_loop(void) {
    return ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
}

static inline void clibev_break_all(struct ev_loop *loop) { ev_break(loop, EVBREAK_ALL); }

typedef void (*clibev_prepare_cb)(struct ev_loop *, ev_prepare *, int);
typedef void (*clibev_check_cb)(struct ev_loop *, ev_check *, int);

/// A prepare watcher runs just before the loop blocks (the turn's work is done) ...
static inline void clibev_prepare_start(struct ev_loop *loop, ev_prepare *w, clibev_prepare_cb cb, void *data) {
    ev_prepare_init(w, cb);
    w->data = data;
    ev_prepare_start(loop, w);
}

/// ... and a check watcher just after it wakes (the turn's work begins).
static inline void clibev_check_start(struct ev_loop *loop, ev_check *w, clibev_check_cb cb, void *data) {
    ev_check_init(w, cb);
    w->data = data;
    ev_check_start(loop, w);
}

typedef void (*clibev_timer_cb)(struct ev_loop *, ev_timer *, int);

/// A one-shot timer `after` seconds from the loop's time (taken when the turn woke).
static inline void clibev_timer_start(struct ev_loop *loop, ev_timer *w, double after, clibev_timer_cb cb, void *data) {
    ev_timer_init(w, cb, after, 0.);
    w->data = data;
    ev_timer_start(loop, w);
}

static inline void clibev_timer_stop(struct ev_loop *loop, ev_timer *w) { ev_timer_stop(loop, w); }

typedef void (*clibev_io_cb)(struct ev_loop *, ev_io *, int);

/// A read watcher (tests: a descriptor that stays readable keeps every turn busy).
static inline void clibev_read_start(struct ev_loop *loop, ev_io *w, int fd, clibev_io_cb cb) {
    ev_io_init(w, cb, fd, EV_READ);
    ev_io_start(loop, w);
}

static inline void clibev_io_stop(struct ev_loop *loop, ev_io *w) { ev_io_stop(loop, w); }

static inline void clibev_prepare_stop(struct ev_loop *loop, ev_prepare *w) { ev_prepare_stop(loop, w); }
static inline void clibev_check_stop(struct ev_loop *loop, ev_check *w) { ev_check_stop(loop, w); }
#endif
