/* files_store.c - tandem's file storage alone (no HTTP, no records): COUNT uploads of 64 KiB
 * stored by 8 threads (the upload pool's size) in new record directories of one collection,
 * as an upload is stored, printing files/s and the CPU time (user + system of this process)
 * per file. Two ways, to compare them in the same run on the same file system:
 *
 *   files_store DIR COUNT put     storage_put: temporary file, fdatasync, rename, fsync of
 *                                 the record directory and of the collection directory (how
 *                                 uploads were stored before 2026-12-08)
 *   files_store DIR COUNT create  storage_create (written and fdatasynced in place) then
 *                                 storage_sync (the record directory, and the collection
 *                                 directory with its fsync shared among the threads): how
 *                                 uploads are stored now
 *
 * Prints "MODE files/s cpu-us/file". */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "storage/storage.h"

#define THREADS 8
#define SIZE 65536

static struct storage *st;
static bool use_put;
static long per_thread;
static char data[SIZE];

static void *run(void *arg)
{
    long t = (long)(intptr_t)arg;
    for (long i = 0; i < per_thread; i++) {
        char key[128];
        snprintf(key, sizeof(key), "coll/r%02ld_%09ld/payload_abcdefghij.txt", t, i);
        const char *keys[] = {key};
        int rc = use_put ? storage_put(st, key, data, SIZE)
                         : storage_create(st, key, data, SIZE) ?: storage_sync(st, keys, 1);
        if (rc) {
            fprintf(stderr, "files_store: %s: %s\n", key, err_str(rc));
            exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4 || atol(argv[2]) < THREADS ||
        (strcmp(argv[3], "put") != 0 && strcmp(argv[3], "create") != 0))
        return fprintf(stderr, "usage: files_store DIR COUNT put|create\n"), 2;
    use_put = strcmp(argv[3], "put") == 0;
    per_thread = atol(argv[2]) / THREADS;
    for (size_t i = 0; i < SIZE; i++)
        data[i] = (char)(32 + (i * 7) % 90);
    if ((mkdir(argv[1], 0700) != 0 && errno != EEXIST) || storage_open("local", argv[1], &st) != 0)
        return fprintf(stderr, "files_store: cannot open %s\n", argv[1]), 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, run, (void *)(intptr_t)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    long n = per_thread * THREADS;
    printf("%s %.0f %.1f\n", argv[3], (double)n / wall, cpu * 1e6 / (double)n);
    storage_close(st);
    return 0;
}
