/*
 * A librdkafka mock cluster of 3 brokers in a process of its own, for the Kafka benchmark: the
 * brokers' work then does not compete with the producer under test for its threads and locks.
 *
 *   kafka_mock_cluster PARTITIONS TOPIC [TOPIC...]
 *
 * Creates each TOPIC with PARTITIONS partitions (replicated on every broker), prints the bootstrap
 * servers on one line to stdout, and serves until SIGTERM, SIGINT or end of input on stdin. The
 * last one lets a parent that dies without cleaning up take the cluster with it, as long as it
 * holds the write end of our stdin; mind that a stdin of /dev/null ends at once.
 *
 * Unlike a Kafka broker, librdkafka's mock brokers leave Nagle's algorithm on: a client that waits
 * for its acknowledgements before sending more (the relay, once per batch) then waits ~40 ms for
 * a good part of its replies, until its delayed ACK releases them. We turn it off as Kafka does,
 * so that the benchmark measures the relay and not that artefact.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MOCK_BROKERS 3

static volatile sig_atomic_t mock_stop_requested;

static void mock_on_signal(int signo)
{
    (void)signo;
    mock_stop_requested = 1;
}

/* Parses a partition count. Returns 0, or -1 with the reason in err. */
static int mock_parse_partitions(const char *text, int *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || n < 1 || n > INT_MAX) {
        snprintf(err, errlen, "partitions: a positive whole number, not '%s'", text);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/*
 * Blocks SIGTERM and SIGINT outside the wait, so that a signal arriving between the flag check and
 * ppoll() still ends the wait; their previous mask goes to *unblocked. Cannot fail with these
 * arguments.
 */
static void mock_install_signals(sigset_t *unblocked)
{
    struct sigaction action = {.sa_handler = mock_on_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigprocmask(SIG_BLOCK, &blocked, unblocked);
    sigdelset(unblocked, SIGTERM);
    sigdelset(unblocked, SIGINT);
}

/* Returns once a signal came or stdin reached its end (or failed: nobody can tell us more). */
static void mock_wait_for_end(const sigset_t *unblocked)
{
    char discard[4096];
    while (!mock_stop_requested) {
        struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
        int ready = ppoll(&in, 1, NULL, unblocked);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            return;
        ssize_t n = read(STDIN_FILENO, discard, sizeof discard);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return;
    }
}

/*
 * Sets TCP_NODELAY on every listening TCP socket of this process, i.e. the brokers' (the mock API
 * does not expose them): Linux hands the option down to the connections they accept. Returns 0,
 * or -1 with the reason in err when fewer than `brokers` listeners were found.
 */
static int mock_disable_nagle(int brokers, char *err, size_t errlen)
{
    DIR *fds = opendir("/proc/self/fd");
    if (fds == NULL) {
        snprintf(err, errlen, "/proc/self/fd: %s", strerror(errno));
        return -1;
    }
    int listeners = 0;
    for (struct dirent *entry; (entry = readdir(fds)) != NULL;) {
        char *end;
        long fd = strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || fd == dirfd(fds))
            continue;
        int accepting = 0, protocol = 0, on = 1;
        socklen_t len = sizeof accepting;
        if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting)
            continue;
        len = sizeof protocol;
        if (getsockopt((int)fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0 ||
            protocol != IPPROTO_TCP)
            continue;
        if (setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0)
            listeners++;
    }
    closedir(fds);
    if (listeners < brokers) {
        snprintf(err, errlen, "turned Nagle's algorithm off on %d listening sockets, not %d",
                 listeners, brokers);
        return -1;
    }
    return 0;
}

/* Creates the cluster and its topics; *rk_out owns it (destroy the cluster first). Returns 0, or
 * -1 with the reason in err. */
static int mock_start(int partitions, char *const topics[], int n_topics, rd_kafka_t **rk_out,
                      rd_kafka_mock_cluster_t **cluster_out, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The cluster needs a client handle to live in; this one never connects anywhere. */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_mock_cluster_t *cluster = rd_kafka_mock_cluster_new(rk, MOCK_BROKERS);
    if (cluster == NULL) {
        snprintf(err, errlen, "cannot create a mock cluster of %d brokers", MOCK_BROKERS);
        rd_kafka_destroy(rk);
        return -1;
    }
    for (int i = 0; i < n_topics; i++) {
        rd_kafka_resp_err_t e =
            rd_kafka_mock_topic_create(cluster, topics[i], partitions, MOCK_BROKERS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "cannot create topic '%s': %s", topics[i], rd_kafka_err2str(e));
            rd_kafka_mock_cluster_destroy(cluster);
            rd_kafka_destroy(rk);
            return -1;
        }
    }
    if (mock_disable_nagle(MOCK_BROKERS, err, errlen) != 0) {
        rd_kafka_mock_cluster_destroy(cluster);
        rd_kafka_destroy(rk);
        return -1;
    }
    *rk_out = rk;
    *cluster_out = cluster;
    return 0;
}

int main(int argc, char **argv)
{
    char err[512];
    int partitions;
    if (argc < 3) {
        fprintf(stderr, "usage: %s PARTITIONS TOPIC [TOPIC...]\n", argv[0]);
        return 2;
    }
    if (mock_parse_partitions(argv[1], &partitions, err, sizeof err) != 0) {
        fprintf(stderr, "kafka_mock_cluster: %s\n", err);
        return 2;
    }

    sigset_t unblocked;
    mock_install_signals(&unblocked);
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *cluster;
    if (mock_start(partitions, argv + 2, argc - 2, &rk, &cluster, err, sizeof err) != 0) {
        fprintf(stderr, "kafka_mock_cluster: %s\n", err);
        return 1;
    }
    /* The parent waits for this line before it starts any client. */
    int printed = printf("%s\n", rd_kafka_mock_cluster_bootstraps(cluster));
    int status = 0;
    if (printed < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "kafka_mock_cluster: cannot write to stdout: %s\n", strerror(errno));
        status = 1;
    } else {
        mock_wait_for_end(&unblocked);
    }
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(rk);
    return status;
}
