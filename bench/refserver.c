/* The reference server of bench/refserver.py, in C: what the load generator reaches
 * against a server that costs next to nothing per request is its ceiling.
 *
 * usage: refserver KIND PAYLOAD_HEX FD   (FD: the bound socket, listening if KIND is
 *                                         read or echo)
 *   read   accept, send PAYLOAD, close
 *   echo   accept, read until EOF (at most MAX_REQUEST bytes), send it back, close
 *   udp    answer every datagram with itself
 * Runs until killed; several processes share the socket (pre-forked).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_REQUEST 65536
static int listener;

static char buffer[MAX_REQUEST + 4096];

static void send_all(int s, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(s, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s read|echo|udp PAYLOAD_HEX FD\n", argv[0]);
        return 2;
    }
    listener = atoi(argv[3]);
    int echo = strcmp(argv[1], "echo") == 0, udp = strcmp(argv[1], "udp") == 0;
    size_t len = strlen(argv[2]) / 2;
    char *payload = malloc(len + 1);
    if (payload == NULL)
        return 1;
    for (size_t i = 0; i < len; i++) {
        unsigned int byte;
        if (sscanf(argv[2] + 2 * i, "%2x", &byte) != 1)
            return 2;
        payload[i] = (char)byte;
    }
    if (udp) {
        for (;;) {
            struct sockaddr_storage peer;
            socklen_t peer_len = sizeof peer;
            ssize_t n = recvfrom(listener, buffer, 2048, 0, (struct sockaddr *)&peer,
                                 &peer_len);
            if (n >= 0)
                sendto(listener, buffer, (size_t)n, 0, (struct sockaddr *)&peer, peer_len);
        }
    }
    struct timeval timeout = {5, 0};
    for (;;) {
        int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0)
            continue;
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        if (echo) {
            size_t got = 0;
            while (got <= MAX_REQUEST) {
                ssize_t n = recv(conn, buffer + got, 4096, 0);
                if (n <= 0)
                    break;
                got += (size_t)n;
            }
            send_all(conn, buffer, got);
        } else {
            send_all(conn, payload, len);
        }
        close(conn);
    }
}
