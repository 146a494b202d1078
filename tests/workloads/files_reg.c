/*
 * files_reg: a dynamically linked process holding regular files opened in
 * every way that matters to a dump, each with known state:
 *
 *   fd 10  plain.txt   O_RDONLY at 1234
 *   fd 11  dup of 10 (one open file: moving one moves the other)
 *   fd 12  plain.txt   O_RDONLY at 77, opened again (its own position)
 *   fd 13  log.txt     O_WRONLY|O_APPEND|O_CLOEXEC, "hello\n" written
 *   fd 14  rw.bin      O_RDWR|O_NONBLOCK|O_NOATIME|O_DSYNC at 4101, owned
 *                      by this process (F_SETOWN) with signal SIGUSR2
 *   fd 15  a name with a newline, spaces, bytes that are not UTF-8 and
 *          " (deleted)" at its end (the file is not deleted), at 3
 *   fd 16  dir/        O_RDONLY|O_DIRECTORY
 *   fd 17  /dev/zero   O_RDONLY
 *   fd 18  sparse.bin  O_RDWR at 5 GiB (a position past 32 bits)
 *   fd 19  path.txt    O_PATH
 *   fd 20  dup3 of 12 with O_CLOEXEC (the fd flag is per fd)
 *   fd 900 plain.txt   O_RDWR at 9 (a high fd number)
 *
 *   files_reg OUTFILE
 *
 * Its files live in its cwd. Prints "key value" facts, then "ready", and
 * waits in sigsuspend for SIGUSR1; then checks every fd (flags, fd flags,
 * position, inode, contents, sharing, owner) and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PLAIN_LEN 65536
#define ODD_NAME "odd\nname with  spaces \xff\xfe (deleted)"

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }
static void on_usr2(int sig) { (void)sig; }

static unsigned char pattern(unsigned long i, int salt)
{
	return (unsigned char)(((i * 2654435761u) >> 13) ^ (unsigned)salt);
}

static char msg[512];

static int verdict(const char *path, const char *m)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, m, strlen(m)) < 0)
			return 2;
		close(fd);
	}
	return strcmp(m, "PASS\n") == 0 ? 0 : 1;
}

static int make_file(const char *name, int salt, size_t len)
{
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	if (fd < 0)
		return -1;
	unsigned char buf[4096];
	for (size_t off = 0; off < len; off += sizeof(buf)) {
		size_t n = len - off < sizeof(buf) ? len - off : sizeof(buf);
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i, salt);
		if (write(fd, buf, n) != (ssize_t)n)
			return -1;
	}
	close(fd);
	return 0;
}

static int place(int fd, int at)
{
	if (fd < 0)
		return -1;
	if (fd == at)
		return at;
	if (dup2(fd, at) != at)
		return -1;
	close(fd);
	return at;
}

struct want {
	int fd;
	int flags; /* F_GETFL */
	int fdflags; /* F_GETFD */
	off_t pos; /* -1: not checked */
	ino_t ino;
};

static struct want wants[16];
static int nwants;

static int record(int fd, off_t pos)
{
	struct stat st;
	if (fstat(fd, &st))
		return -1;
	struct want *w = &wants[nwants++];
	w->fd = fd;
	w->flags = fcntl(fd, F_GETFL);
	w->fdflags = fcntl(fd, F_GETFD);
	w->pos = pos;
	w->ino = st.st_ino;
	printf("fd%d_flags %#o\nfd%d_pos %lld\n", fd, w->flags, fd, (long long)pos);
	return 0;
}

/* Reads n bytes at the current position of fd and compares them with the
 * pattern of salt from offset off. */
static int read_matches(int fd, off_t off, int salt, size_t n)
{
	unsigned char buf[64];
	if (n > sizeof(buf) || read(fd, buf, n) != (ssize_t)n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (buf[i] != pattern(off + i, salt))
			return 0;
	return 1;
}

static const char *check(void)
{
	for (int i = 0; i < nwants; i++) {
		struct want *w = &wants[i];
		struct stat st;
		if (fstat(w->fd, &st)) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d is not open\n", w->fd);
			return msg;
		}
		if (st.st_ino != w->ino) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d is another file\n", w->fd);
			return msg;
		}
		int fl = fcntl(w->fd, F_GETFL);
		if (fl != w->flags) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d flags %#o, want %#o\n", w->fd, fl, w->flags);
			return msg;
		}
		int fdfl = fcntl(w->fd, F_GETFD);
		if (fdfl != w->fdflags) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d fd flags %d, want %d\n", w->fd, fdfl, w->fdflags);
			return msg;
		}
		if (w->pos >= 0) {
			off_t p = lseek(w->fd, 0, SEEK_CUR);
			if (p != w->pos) {
				snprintf(msg, sizeof(msg), "FAIL: fd %d at %lld, want %lld\n", w->fd,
					 (long long)p, (long long)w->pos);
				return msg;
			}
		}
	}
	/* Contents at the positions. */
	if (!read_matches(10, 1234, 1, 16))
		return "FAIL: plain.txt at 1234 reads wrong\n";
	/* 10 and 11 are one open file: 11 moved with 10. */
	if (lseek(11, 0, SEEK_CUR) != 1250)
		return "FAIL: fd 11 does not share fd 10's position\n";
	if (lseek(12, 0, SEEK_CUR) != 77 || !read_matches(12, 77, 1, 8))
		return "FAIL: fd 12 lost its own position\n";
	/* 20 is a dup of 12. */
	if (lseek(20, 0, SEEK_CUR) != 85)
		return "FAIL: fd 20 does not share fd 12's position\n";
	if (write(13, "more\n", 5) != 5)
		return "FAIL: cannot append to log.txt\n";
	struct stat st;
	if (fstat(13, &st) || st.st_size != 11)
		return "FAIL: log.txt did not grow by an append\n";
	char buf[16] = { 0 };
	if (pread(14, buf, 5, 4096) != 5 || memcmp(buf, "rw-rw", 5))
		return "FAIL: rw.bin contents\n";
	if (!read_matches(15, 3, 2, 10))
		return "FAIL: the odd name reads wrong\n";
	struct f_owner_ex own;
	if (fcntl(14, F_GETOWN_EX, &own) || own.type != F_OWNER_PID || own.pid != getpid())
		return "FAIL: rw.bin lost its owner\n";
	if (fcntl(14, F_GETSIG) != SIGUSR2)
		return "FAIL: rw.bin lost its owner signal\n";
	if (read(17, buf, 4) != 4 || buf[0] || buf[3])
		return "FAIL: /dev/zero\n";
	if (write(18, "x", 1) != 1 || lseek(18, 0, SEEK_CUR) != (5LL << 30) + 1)
		return "FAIL: sparse.bin past 4 GiB\n";
	if (!read_matches(900, 9, 1, 4))
		return "FAIL: fd 900\n";
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);

	if (make_file("plain.txt", 1, PLAIN_LEN) || make_file(ODD_NAME, 2, 100) ||
	    make_file("path.txt", 3, 10))
		return 3;
	if (mkdir("dir", 0755))
		return 3;

	int fd = place(open("plain.txt", O_RDONLY), 10);
	if (fd < 0 || lseek(10, 1234, SEEK_SET) != 1234 || dup2(10, 11) != 11)
		return 4;
	if (place(open("plain.txt", O_RDONLY), 12) < 0 || lseek(12, 77, SEEK_SET) != 77)
		return 4;
	if (place(open("log.txt", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600), 13) < 0 ||
	    write(13, "hello\n", 6) != 6)
		return 4;
	if (place(open("rw.bin", O_RDWR | O_CREAT | O_NONBLOCK | O_NOATIME | O_DSYNC, 0600), 14) < 0 ||
	    pwrite(14, "rw-rw-rw", 8, 4096) != 8 || lseek(14, 4101, SEEK_SET) != 4101 ||
	    fcntl(14, F_SETOWN, getpid()) || fcntl(14, F_SETSIG, SIGUSR2))
		return 4;
	if (place(open(ODD_NAME, O_RDONLY), 15) < 0 || lseek(15, 3, SEEK_SET) != 3)
		return 4;
	if (place(open("dir", O_RDONLY | O_DIRECTORY), 16) < 0)
		return 4;
	if (place(open("/dev/zero", O_RDONLY), 17) < 0)
		return 4;
	if (place(open("sparse.bin", O_RDWR | O_CREAT, 0600), 18) < 0 ||
	    ftruncate(18, 6LL << 30) || lseek(18, 5LL << 30, SEEK_SET) != 5LL << 30)
		return 4;
	if (place(open("path.txt", O_PATH), 19) < 0)
		return 4;
	if (dup3(12, 20, O_CLOEXEC) != 20)
		return 4;
	if (place(open("plain.txt", O_RDWR), 900) < 0 || lseek(900, 9, SEEK_SET) != 9)
		return 4;

	if (record(10, 1234) || record(11, 1234) || record(12, 77) || record(13, 6) ||
	    record(14, 4101) || record(15, 3) || record(16, -1) || record(17, 0) ||
	    record(18, 5LL << 30) || record(19, -1) || record(20, 77) || record(900, 9))
		return 5;
	printf("pid %d\n", getpid());
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	const char *why = check();
	return verdict(argv[1], why ? why : "PASS\n");
}
