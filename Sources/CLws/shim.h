// Thin shim over libwebsockets 4.1: exposes macros Swift cannot import.
#ifndef CLWS_SHIM_H
#define CLWS_SHIM_H
#include <libwebsockets.h>

static const int clws_pre = LWS_PRE;

/// lws_sock_file_fd_type is a union; build it for a plain file descriptor.
static inline lws_sock_file_fd_type clws_filefd(int fd) {
    lws_sock_file_fd_type u;
    u.filefd = fd;
    return u;
}

static inline lws_sock_file_fd_type clws_sockfd(int fd) {
    lws_sock_file_fd_type u;
    u.sockfd = fd;
    return u;
}
#endif
