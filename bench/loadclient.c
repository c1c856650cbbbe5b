/* One client of the load generator, in C: the request loop of bench/loadgen.py's
 * `_client`, request for request, without the interpreter's CPU per request.
 *
 * On two cores the clients share the machine with the daemon they measure, so every
 * microsecond a client spends is one the daemon does not get; a Python client costs
 * several times what this one does, and the fastest cases measured the clients instead
 * of the daemon. bench/cclient.py compiles this file once per run and bench/loadgen.py
 * starts one process per concurrent client.
 *
 * usage: loadclient KIND HOST PORT PAYLOAD_HEX TIMEOUT RTO WORKER START MEASURE END
 *   KIND     read | echo | udp (see bench/loadgen.py)
 *   START, MEASURE, END   CLOCK_MONOTONIC seconds (Python's time.monotonic())
 *
 * Output on stdout, once END has passed:
 *   "retransmits N\n", "errors K\n", K lines "COUNT REASON\n",
 *   "latencies M\n", then M native doubles (seconds).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPLY 65536     /* bounds every read loop, as MAX_REPLY in loadgen.py */
#define STALE_REPLIES 16
#define RETRANSMITS 20
#define MAX_ERROR_KINDS 32

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double when)
{
    struct timespec ts;
    ts.tv_sec = (time_t)when;
    ts.tv_nsec = (long)((when - (double)ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static struct timeval timeval_of(double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    return tv;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

struct error_kind { const char *reason; long count; };
static struct error_kind errors[MAX_ERROR_KINDS];
static int error_kinds;

static void count_error(const char *reason)
{
    for (int i = 0; i < error_kinds; i++)
        if (strcmp(errors[i].reason, reason) == 0) {
            errors[i].count++;
            return;
        }
    if (error_kinds < MAX_ERROR_KINDS) {
        errors[error_kinds].reason = strdup(reason);
        errors[error_kinds].count = 1;
        error_kinds++;
    }
}

static struct sockaddr_in target;
static struct timeval io_timeout;
static const struct linger linger_reset = {1, 0};
static char reply[MAX_REPLY + 4096];

/* 1: the expected reply; 0: a wrong one; -1: a failed call (errno set). */
static int stream_request(const char *payload, size_t len, int send_first)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    int result = -1;
    if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &io_timeout, sizeof io_timeout) < 0
        || setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &io_timeout, sizeof io_timeout) < 0
        || connect(s, (struct sockaddr *)&target, sizeof target) < 0)
        goto out;
    if (send_first) {
        size_t sent = 0;
        while (sent < len) {
            ssize_t n = send(s, payload + sent, len - sent, MSG_NOSIGNAL);
            if (n < 0)
                goto out;
            sent += (size_t)n;
        }
        if (shutdown(s, SHUT_WR) < 0)
            goto out;
    }
    size_t got = 0;
    while (got <= MAX_REPLY) {
        ssize_t n = recv(s, reply + got, 4096, 0);
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    setsockopt(s, SOL_SOCKET, SO_LINGER, &linger_reset, sizeof linger_reset);
    result = got == len && memcmp(reply, payload, len) == 0;
out:;
    int saved = errno;
    close(s);
    errno = saved;
    return result;
}

static long retransmits;

/* As loadgen._Datagram.request: 1, 0 (never answered) or -1 (errno set). */
static int datagram_request(int s, const char *payload, size_t len, int worker, long seq)
{
    static char message[MAX_REPLY];
    int head = snprintf(message, sizeof message, "%d:%ld:", worker, seq);
    if (head < 0 || (size_t)head + len > sizeof message) {
        errno = EMSGSIZE;
        return -1;
    }
    memcpy(message + head, payload, len);
    size_t total = (size_t)head + len;
    for (int attempt = 0; attempt <= RETRANSMITS; attempt++) {
        if (attempt)
            retransmits++;
        if (send(s, message, total, 0) < 0)
            return -1;
        for (int i = 0; i < STALE_REPLIES; i++) {
            ssize_t n = recv(s, reply, 2048, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;      /* SO_RCVTIMEO expired: lost; send it again */
                return -1;
            }
            if ((size_t)n == total && memcmp(reply, message, total) == 0)
                return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 11) {
        fprintf(stderr, "usage: %s KIND HOST PORT PAYLOAD_HEX TIMEOUT RTO WORKER START "
                        "MEASURE END\n", argv[0]);
        return 2;
    }
    const char *kind = argv[1];
    int udp = strcmp(kind, "udp") == 0, echo = strcmp(kind, "echo") == 0;
    if (!udp && !echo && strcmp(kind, "read") != 0) {
        fprintf(stderr, "unknown kind %s\n", kind);
        return 2;
    }
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((unsigned short)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &target.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", argv[2]);
        return 2;
    }
    size_t hex_len = strlen(argv[4]);
    size_t len = hex_len / 2;
    char *payload = malloc(len + 1);
    if (payload == NULL || hex_len % 2)
        return 2;
    for (size_t i = 0; i < len; i++) {
        int hi = hex_value(argv[4][2 * i]), lo = hex_value(argv[4][2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 2;
        payload[i] = (char)(hi * 16 + lo);
    }
    io_timeout = timeval_of(atof(argv[5]));
    struct timeval rto = timeval_of(atof(argv[6]));
    int worker = atoi(argv[7]);
    double start = atof(argv[8]), measure = atof(argv[9]), end = atof(argv[10]);

    int dgram = -1;
    if (udp) {
        dgram = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (dgram < 0 || setsockopt(dgram, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto) < 0
            || connect(dgram, (struct sockaddr *)&target, sizeof target) < 0) {
            perror("udp socket");
            return 1;
        }
    }
    size_t capacity = 1 << 16, count = 0;
    double *latencies = malloc(capacity * sizeof *latencies);
    if (latencies == NULL)
        return 1;
    long counted_retransmits = 0, seq = 0;
    sleep_until(start);
    for (;;) {
        long sent_again = retransmits;
        double t0 = now();
        if (t0 >= end)
            break;
        int good = udp ? datagram_request(dgram, payload, len, worker, ++seq)
                       : stream_request(payload, len, echo);
        const char *reason = good < 0 ? strerror(errno) : "wrong reply";
        double t1 = now();
        if (t0 >= measure) {
            counted_retransmits += retransmits - sent_again;
            if (good != 1)
                count_error(reason);    /* started in the window: counted */
            else if (t1 <= end) {
                if (count == capacity) {
                    capacity *= 2;
                    latencies = realloc(latencies, capacity * sizeof *latencies);
                    if (latencies == NULL)
                        return 1;
                }
                latencies[count++] = t1 - t0;
            }
        }
        if (good != 1) {
            /* A refusing daemon must not turn the client into a spinner. */
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
    }
    printf("retransmits %ld\nerrors %d\n", counted_retransmits, error_kinds);
    for (int i = 0; i < error_kinds; i++)
        printf("%ld %s\n", errors[i].count, errors[i].reason);
    printf("latencies %zu\n", count);
    fflush(stdout);
    size_t written = 0;
    while (written < count) {
        size_t n = fwrite(latencies + written, sizeof *latencies, count - written, stdout);
        if (n == 0)
            return 1;
        written += n;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
