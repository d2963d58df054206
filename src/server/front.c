/*
 * front.c — the front door: every connection is accepted here and held, at
 * the cost of one small record and no thread, until the head of its request
 * (request line and headers) has arrived whole. Then the head's framing is
 * checked (head.c) and the socket is handed to the libmicrohttpd daemon
 * (MHD_add_connection), whose thread for that connection runs the request.
 * The bytes are only peeked (MSG_PEEK), so MHD reads the request from its
 * first byte. Every response says "Connection: close" (http.c), so every
 * request passes this door.
 *
 * Refused here, with one JSON error and the connection closed:
 *  - 503 past --max-connections (every open client connection counts, held
 *    here or in MHD) or --max-connections-per-ip, or when MHD already runs
 *    max_active requests;
 *  - 400 for bad framing (head.c), 431 for a head over HEADER_MEMORY;
 *  - 408 for a head not complete --header-timeout seconds after its first
 *    byte, or stalled (no new byte) for --timeout seconds; a connection that
 *    sends nothing for --timeout seconds is closed.
 * An answered connection is shut for writing and drained (up to LINGER_MS)
 * before it is closed, so that the client reads the answer instead of a
 * reset.
 *
 * Threads: the front thread (front_main) owns the held connections. The
 * counts (struct front's mu) are shared with MHD's connection threads,
 * which give a connection's place back when MHD closes it (front_closed).
 */
#define _GNU_SOURCE /* accept4 */
#include "server/server_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IP_BUCKETS 4096
#define LINGER_MS 2000
#define TICK_MS 100

struct fconn {
    int fd;
    bool closing;                  /* answered: drained until EOF or LINGER_MS */
    uint64_t since_ms;             /* closing: when it was answered */
    uint64_t first_ms;             /* the head's first byte arrived; 0 = none yet */
    uint64_t last_ms;              /* a byte last arrived (or accepted) */
    size_t seen;                   /* bytes of the head arrived so far */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    size_t slot;                   /* index in front.conns */
};

struct ipcount {
    unsigned char ip[16];
    int n;
    struct ipcount *next;
};

struct front {
    struct server *srv;
    int lfd, epfd, wake;           /* listening socket, epoll, eventfd that stops the thread */
    pthread_t th;
    bool running;
    struct fconn **conns;          /* front thread: the held connections */
    size_t n_conns, cap_conns;
    char *peek;                    /* front thread: HEADER_MEMORY bytes */
    bool accept_paused;            /* front thread: out of descriptors, the listening socket is off for a tick */
    uint64_t last_warn_ms;         /* front thread: the last warning about it */
    pthread_mutex_t mu;            /* guards what follows */
    int total;                     /* open client connections, here or in MHD */
    int active;                    /* connections handed to MHD */
    struct ipcount *ips[IP_BUCKETS];
};

static uint64_t now_ms(void)
{
    return now_ns() / 1000000;
}

/* ---- the counts ---- */

/* The address as 16 bytes (IPv4 as v4-mapped IPv6). */
static void ip_key(const struct sockaddr *sa, unsigned char out[16])
{
    memset(out, 0, 16);
    if (sa->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

/* The count of address ip, created at 0 when create; NULL when absent (or
 * out of memory). Under mu. */
static struct ipcount **ip_slot(struct front *f, const unsigned char ip[16])
{
    struct ipcount **p = &f->ips[hash_bytes(ip, 16) % IP_BUCKETS];
    while (*p && memcmp((*p)->ip, ip, 16))
        p = &(*p)->next;
    return p;
}

/* Counts a new connection from sa: 0, or -1 when it is past a limit (it is
 * counted all the same, until it is closed after its 503). */
static int place_take(struct front *f, const struct sockaddr *sa)
{
    const struct server_opts *o = &f->srv->o;
    unsigned char ip[16];
    ip_key(sa, ip);
    pthread_mutex_lock(&f->mu);
    struct ipcount **p = ip_slot(f, ip);
    bool over = f->total >= o->max_connections || (o->max_per_ip > 0 && *p && (*p)->n >= o->max_per_ip);
    if (!*p && (*p = calloc(1, sizeof **p)))
        memcpy((*p)->ip, ip, 16);
    if (*p)
        (*p)->n++;
    f->total++;
    pthread_mutex_unlock(&f->mu);
    return over ? -1 : 0;
}

/* Gives back the place of a connection from sa (was_active: one handed to MHD). */
static void place_give(struct front *f, const struct sockaddr *sa, bool was_active)
{
    unsigned char ip[16];
    ip_key(sa, ip);
    pthread_mutex_lock(&f->mu);
    struct ipcount **p = ip_slot(f, ip);
    if (*p && --(*p)->n <= 0) {
        struct ipcount *dead = *p;
        *p = dead->next;
        free(dead);
    }
    f->total--;
    if (was_active)
        f->active--;
    pthread_mutex_unlock(&f->mu);
}

void front_notify(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
    struct server *srv = cls;
    struct front *f = srv->front;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = f;
        return;
    }
    if (!*socket_context)
        return;
    *socket_context = NULL;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct sockaddr_in6 none = {.sin6_family = AF_INET6};
    place_give(f, ci && ci->client_addr ? ci->client_addr : (const struct sockaddr *)&none, true);
}

/* ---- the held connections ---- */

static void conn_drop(struct front *f, struct fconn *k)
{
    epoll_ctl(f->epfd, EPOLL_CTL_DEL, k->fd, NULL);
    f->conns[k->slot] = f->conns[--f->n_conns];
    f->conns[k->slot]->slot = k->slot;
}

/* Closes a held connection and gives back its place. */
static void conn_close(struct front *f, struct fconn *k)
{
    conn_drop(f, k);
    close(k->fd);
    place_give(f, (struct sockaddr *)&k->addr, false);
    free(k);
}

/* Answers k with one JSON error (best effort: the socket buffer of a fresh
 * connection takes it whole), shuts it for writing and drains it. */
static void conn_answer(struct front *f, struct fconn *k, const struct oai_error *e)
{
    static const char *reason[] = {[400] = "Bad Request", [408] = "Request Timeout",
                                   [431] = "Request Header Fields Too Large", [503] = "Service Unavailable"};
    char *body = oai_build_error(e);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s"
                      "Connection: close\r\n\r\n",
                      e->status, e->status < 600 && reason[e->status] ? reason[e->status] : "Error",
                      body ? strlen(body) : 0, e->status == 503 ? "Retry-After: 1\r\n" : "");
    send(k->fd, head, (size_t)hn, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (body)
        send(k->fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
    free(body);
    metrics_request(&f->srv->mt, &srv_routes[srv_n_routes - 1], e->status);
    shutdown(k->fd, SHUT_WR);
    k->closing = true;
    k->since_ms = now_ms();
}

/* Reads and drops what a closing connection sends; closes it at EOF. */
static void conn_drain(struct front *f, struct fconn *k)
{
    char buf[4096];
    for (;;) {
        ssize_t r = recv(k->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(f, k);
        return;
    }
}

/* Hands k, whose head is whole and sound, to MHD. */
static void conn_handoff(struct front *f, struct fconn *k)
{
    struct oai_error e;
    pthread_mutex_lock(&f->mu);
    bool full = f->active >= f->srv->o.max_active;
    if (!full)
        f->active++;
    pthread_mutex_unlock(&f->mu);
    if (full) {
        oai_err(&e, 503, "server_error", NULL, "server_busy",
                "The server is running as many requests as it may (%d); please retry.", f->srv->o.max_active);
        conn_answer(f, k, &e);
        return;
    }
    conn_drop(f, k);
    /* MHD_add_connection queues the socket for the daemon's thread, where
     * MHD_CONNECTION_NOTIFY_STARTED and later CLOSED (front_notify) come;
     * when it fails it has closed the socket without either */
    if (MHD_add_connection(f->srv->d, k->fd, (struct sockaddr *)&k->addr, k->addr_len) != MHD_YES) {
        log_warn("http: a connection could not be handed to the daemon: %s", strerror(errno));
        place_give(f, (struct sockaddr *)&k->addr, true);
    }
    free(k);
}

/* New bytes (or EOF) on a held connection. */
static void conn_read(struct front *f, struct fconn *k)
{
    if (k->closing) {
        conn_drain(f, k);
        return;
    }
    ssize_t r = recv(k->fd, f->peek, HEADER_MEMORY, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        conn_close(f, k); /* the client left before sending a request */
        return;
    }
    if (!k->first_ms)
        k->first_ms = now_ms();
    if ((size_t)r > k->seen) {
        k->seen = (size_t)r;
        k->last_ms = now_ms();
    }
    size_t end = srv_head_end(f->peek, (size_t)r);
    struct oai_error e;
    if (!end) {
        if ((size_t)r < HEADER_MEMORY)
            return; /* more to come */
        oai_err(&e, 431, "invalid_request_error", NULL, "headers_too_large",
                "The request line and headers exceed %d bytes.", HEADER_MEMORY);
        conn_answer(f, k, &e);
    } else if (srv_head_check(f->peek, end, &e) < 0) {
        conn_answer(f, k, &e);
    } else {
        conn_handoff(f, k);
    }
}

/* A new client: held, or refused at once past a limit. */
static void conn_accept(struct front *f, int fd, const struct sockaddr_storage *sa, socklen_t len)
{
    struct fconn *k = calloc(1, sizeof *k);
    if (!k || mem_grow(&f->conns, &f->cap_conns, f->n_conns + 1, sizeof *f->conns) < 0) {
        free(k);
        close(fd);
        return;
    }
    uint64_t now = now_ms();
    *k = (struct fconn){.fd = fd, .since_ms = now, .last_ms = now, .addr = *sa, .addr_len = len, .slot = f->n_conns};
    f->conns[f->n_conns++] = k;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET | EPOLLRDHUP, .data.ptr = k};
    bool placed = place_take(f, (const struct sockaddr *)sa) == 0;
    if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        conn_close(f, k);
        return;
    }
    if (!placed) {
        struct oai_error e;
        oai_err(&e, 503, "server_error", NULL, "too_many_connections",
                "The server has as many connections as it may take (from this address or in all); please retry.");
        conn_answer(f, k, &e);
    }
}

/* Accepts every pending connection. */
static void accept_all(struct front *f)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(f->lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* out of descriptors: stop listening for a tick instead of spinning on the backlog */
                uint64_t now = now_ms();
                if (now - f->last_warn_ms > 10000) {
                    log_warn("http: cannot accept a connection: %s (raise the open-file limit or lower "
                             "--max-connections)", strerror(errno));
                    f->last_warn_ms = now;
                }
                struct epoll_event ev = {.events = 0, .data.ptr = &f->lfd};
                epoll_ctl(f->epfd, EPOLL_CTL_MOD, f->lfd, &ev);
                f->accept_paused = true;
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_accept(f, fd, &sa, len);
    }
}

/* The deadlines: heads past --header-timeout, silent connections past
 * --timeout, answered ones past LINGER_MS. */
static void sweep_deadlines(struct front *f)
{
    uint64_t now = now_ms();
    const struct server_opts *o = &f->srv->o;
    for (size_t i = f->n_conns; i-- > 0;) {
        struct fconn *k = f->conns[i];
        if (k->closing) {
            if (now - k->since_ms > LINGER_MS)
                conn_close(f, k);
        } else if (k->first_ms && (now - k->first_ms > (uint64_t)o->header_timeout_s * 1000 ||
                                   now - k->last_ms > (uint64_t)o->timeout_s * 1000)) {
            struct oai_error e;
            oai_err(&e, 408, "invalid_request_error", NULL, "request_timeout",
                    "The request headers did not arrive within %d seconds, or stalled for %d.", o->header_timeout_s,
                    o->timeout_s);
            conn_answer(f, k, &e);
        } else if (!k->first_ms && now - k->last_ms > (uint64_t)o->timeout_s * 1000) {
            conn_close(f, k);
        }
    }
}

static void *front_main(void *arg)
{
    struct front *f = arg;
    struct epoll_event evs[256];
    uint64_t last_sweep = now_ms();
    for (;;) {
        int n = epoll_wait(f->epfd, evs, 256, TICK_MS);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &f->wake)
                return NULL;
            if (evs[i].data.ptr == &f->lfd)
                accept_all(f);
            else
                conn_read(f, evs[i].data.ptr);
        }
        if (now_ms() - last_sweep >= TICK_MS) {
            sweep_deadlines(f);
            last_sweep = now_ms();
            if (f->accept_paused) {
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &f->lfd};
                epoll_ctl(f->epfd, EPOLL_CTL_MOD, f->lfd, &ev);
                f->accept_paused = false;
            }
        }
    }
}

/* ---- lifecycle ---- */

static int listen_on(struct front *f, const struct sockaddr *sa, socklen_t len, struct err *e)
{
    f->lfd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->lfd < 0)
        return err_set(e, ERR_IO, "server: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa->sa_family == AF_INET6)
        setsockopt(f->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(f->lfd, sa, len) < 0 || listen(f->lfd, 4096) < 0)
        return err_set(e, ERR_INVALID, "server: cannot listen on %s port %d: %s", f->srv->o.host, f->srv->o.port,
                       strerror(errno));
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    if (getsockname(f->lfd, (struct sockaddr *)&bound, &bl) == 0)
        f->srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                         : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

int front_start(struct server *srv, const struct sockaddr *sa, socklen_t len, struct err *e)
{
    struct front *f = calloc(1, sizeof *f);
    if (!f || !(f->peek = malloc(HEADER_MEMORY))) {
        free(f);
        return err_set(e, ERR_NOMEM, "server: out of memory");
    }
    f->srv = srv;
    f->lfd = f->epfd = f->wake = -1;
    pthread_mutex_init(&f->mu, NULL);
    srv->front = f;
    if (listen_on(f, sa, len, e) < 0)
        return -1;
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    f->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &f->lfd};
    struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &f->wake};
    if (f->epfd < 0 || f->wake < 0 || epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->lfd, &lev) < 0 ||
        epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->wake, &wev) < 0)
        return err_set(e, ERR_IO, "server: epoll: %s", strerror(errno));
    if (pthread_create(&f->th, NULL, front_main, f) != 0)
        return err_set(e, ERR_IO, "server: cannot start the connection thread");
    f->running = true;
    return 0;
}

void front_stop(struct server *srv)
{
    struct front *f = srv->front;
    if (!f)
        return;
    if (f->running) {
        uint64_t one = 1;
        if (write(f->wake, &one, sizeof one) < 0)
            log_warn("http: cannot wake the connection thread: %s", strerror(errno));
        pthread_join(f->th, NULL);
        f->running = false;
    }
    while (f->n_conns)
        conn_close(f, f->conns[f->n_conns - 1]);
    if (f->lfd >= 0)
        close(f->lfd);
    f->lfd = -1;
}

void front_free(struct server *srv)
{
    struct front *f = srv->front;
    if (!f)
        return;
    front_stop(srv);
    if (f->epfd >= 0)
        close(f->epfd);
    if (f->wake >= 0)
        close(f->wake);
    for (int i = 0; i < IP_BUCKETS; i++)
        while (f->ips[i]) {
            struct ipcount *dead = f->ips[i];
            f->ips[i] = dead->next;
            free(dead);
        }
    pthread_mutex_destroy(&f->mu);
    free(f->conns);
    free(f->peek);
    free(f);
    srv->front = NULL;
}
