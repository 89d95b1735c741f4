/* files_ref.c - the kernel's own cost of storing uploads, without tandem: COUNT files of 64 KiB
 * written in PocketBase's layout (DIR/<collection>/<record>/<name>, a new directory per record)
 * by one thread, with the syncs of one mode, printing files/s and the CPU time (user + system
 * of this process) per file. bench/files.sh runs it in the same run as tandem's uploads, as
 * the floor a file system gives on this machine.
 *
 *   files_ref DIR COUNT MODE
 *   MODE each:   per file: mkdir, temp file, write, fdatasync, rename, fsync of the record
 *                directory and of its parent (the three syncs tandem did per upload before)
 *   MODE group:  per file: mkdir, create, write, start of write-back (sync_file_range); every
 *                32 files: fdatasync each, fsync each record directory and the parent once
 *                (the most one thread can share)
 *   MODE syncfs: as group, but one syncfs of the whole file system per 32 files instead of
 *                their fsyncs (it also writes back every other user's dirty data)
 *   MODE nosync: per file: mkdir, create, write (no sync at all: not durable; the floor)
 *
 * Prints "MODE files/s cpu-us/file". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GROUP 32
#define SIZE 65536

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void sync_path(const char *path, int dir)
{
    int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
    if (fd < 0 || (dir ? fsync(fd) : fdatasync(fd)) != 0)
        die(path);
    close(fd);
}

static void write_file(const char *path, const char *data, int start_writeback)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, data, SIZE) != SIZE)
        die(path);
    if (start_writeback && sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) != 0)
        die(path);
    if (close(fd) != 0)
        die(path);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return fprintf(stderr, "usage: files_ref DIR COUNT each|group|syncfs|nosync\n"), 2;
    const char *top = argv[1], *mode = argv[3];
    long count = atol(argv[2]);
    int each = strcmp(mode, "each") == 0, group = strcmp(mode, "group") == 0;
    int fs = strcmp(mode, "syncfs") == 0;
    if (count <= 0 || (!each && !group && !fs && strcmp(mode, "nosync") != 0))
        return fprintf(stderr, "files_ref: bad COUNT or MODE\n"), 2;
    char coll[4096], data[SIZE];
    for (size_t i = 0; i < SIZE; i++)
        data[i] = (char)(32 + (i * 7) % 90);
    snprintf(coll, sizeof(coll), "%s/%s", top, mode);
    if (mkdir(top, 0700) != 0 && errno != EEXIST)
        die(top);
    if (mkdir(coll, 0700) != 0)
        die(coll);
    static char paths[GROUP][4200], dirs[GROUP][4200];
    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        int g = (int)(i % GROUP);
        snprintf(dirs[g], sizeof(dirs[g]), "%s/r%09ld", coll, i);
        snprintf(paths[g], sizeof(paths[g]), "%s/payload_%09ld.txt", dirs[g], i);
        if (mkdir(dirs[g], 0700) != 0)
            die(dirs[g]);
        if (each) {
            char tmp[4300];
            snprintf(tmp, sizeof(tmp), "%s.tmp", paths[g]);
            int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
            if (fd < 0 || write(fd, data, SIZE) != SIZE || fdatasync(fd) != 0)
                die(tmp);
            close(fd);
            if (rename(tmp, paths[g]) != 0)
                die(paths[g]);
            sync_path(dirs[g], 1);
            sync_path(coll, 1);
        } else {
            write_file(paths[g], data, group || fs);
            if (fs && (g == GROUP - 1 || i == count - 1)) {
                int fd = open(coll, O_RDONLY | O_DIRECTORY);
                if (fd < 0 || syncfs(fd) != 0)
                    die(coll);
                close(fd);
            }
            if (group && (g == GROUP - 1 || i == count - 1)) {
                for (int k = 0; k <= g; k++)
                    sync_path(paths[k], 0);
                for (int k = 0; k <= g; k++)
                    sync_path(dirs[k], 1);
                sync_path(coll, 1);
            }
        }
    }
    double wall = now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("%s %.0f %.1f\n", mode, (double)count / wall, cpu * 1e6 / (double)count);
    return 0;
}
