/* kafka_mock.c - a Kafka cluster for tests and bench/kafka.sh: librdkafka's mock cluster
 * (it speaks the real protocol) on 127.0.0.1, kept up until stdin closes or a signal.
 *
 *   tandem_kafka_mock [--brokers N] [--partitions P] [--topics a,b,...]
 *
 * Prints "BOOTSTRAP host:port,..." once the topics exist, then reads one command a line and
 * answers "ok" (or "error ...") after each:
 *   down ID | up ID                      take a broker down / bring it back
 *   rtt ID MS                            add latency to a broker's responses
 *   leader TOPIC PARTITION ID            move a partition's leader
 *   error ID APIKEY ERRCODE COUNT RTT_MS next COUNT requests of APIKEY to broker ID fail
 *                                        with ERRCODE after RTT_MS (ERRCODE 0: just slow)
 *   create TOPIC PARTITIONS              create a topic */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int command(rd_kafka_mock_cluster_t *mc, char *line)
{
    char topic[256];
    int a = 0, b = 0, c = 0, d = 0, e = 0;
    if (sscanf(line, "down %d", &a) == 1)
        return rd_kafka_mock_broker_set_down(mc, a);
    if (sscanf(line, "up %d", &a) == 1)
        return rd_kafka_mock_broker_set_up(mc, a);
    if (sscanf(line, "rtt %d %d", &a, &b) == 2)
        return rd_kafka_mock_broker_set_rtt(mc, a, b);
    if (sscanf(line, "leader %255s %d %d", topic, &a, &b) == 3)
        return rd_kafka_mock_partition_set_leader(mc, topic, a, b);
    if (sscanf(line, "error %d %d %d %d %d", &a, &b, &c, &d, &e) == 5) {
        for (int i = 0; i < d; i++)
            if (rd_kafka_mock_broker_push_request_error_rtts(mc, a, (int16_t)b, 1,
                                                             (rd_kafka_resp_err_t)c, e) != 0)
                return -1;
        return 0;
    }
    if (sscanf(line, "create %255s %d", topic, &a) == 2)
        return rd_kafka_mock_topic_create(mc, topic, a, 1);
    return -1;
}

int main(int argc, char **argv)
{
    int brokers = 3, partitions = 4;
    const char *topics = "tandem-events,tandem-changes";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--brokers") == 0)
            brokers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--partitions") == 0)
            partitions = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--topics") == 0)
            topics = argv[i + 1];
    }
    signal(SIGPIPE, SIG_IGN);
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kafka_mock: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "kafka_mock: cannot create the mock cluster\n");
        return 1;
    }
    char *list = strdup(topics);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (rd_kafka_mock_topic_create(mc, t, partitions, brokers < 3 ? brokers : 3) != 0) {
            fprintf(stderr, "kafka_mock: cannot create topic %s\n", t);
            return 1;
        }
    free(list);
    printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    char line[1024];
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        if (command(mc, line) == 0)
            printf("ok\n");
        else
            printf("error %s\n", line);
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
