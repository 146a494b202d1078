/*
 * files_ghost: a process holding files whose names are gone, and one
 * renamed while open, each with known contents and position:
 *
 *   fd 10  gone.txt     O_RDWR at 17, mode 0640, 100 bytes; unlinked
 *   fd 11  dup of 10    (one open file)
 *   fd 12  sparse.bin   O_RDONLY at 40960; 64 KiB with data at 0 and at
 *                       40960 (4 KiB each), holes elsewhere; unlinked
 *   fd 13  after.txt    O_RDONLY at 5, opened as before.txt, then renamed
 *
 *   files_ghost OUTFILE [huge]
 *
 * "huge" adds fd 14: a 2 MiB unlinked file (over the default ghost
 * limit), which a dump must refuse. Its files live in its cwd. Prints
 * facts, "ready", waits in sigsuspend for SIGUSR1, then checks that each
 * file is still nameless (or renamed) with its contents, mode, position
 * and sharing, and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static unsigned char pattern(unsigned long i, int salt)
{
	return (unsigned char)(((i * 2654435761u) >> 13) ^ (unsigned)salt);
}

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

static int put(int fd, off_t off, size_t n, int salt)
{
	unsigned char buf[4096];
	for (size_t done = 0; done < n; done += sizeof(buf)) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = pattern(off + done + i, salt);
		if (pwrite(fd, buf, k, off + done) != (ssize_t)k)
			return -1;
	}
	return 0;
}

static int matches(int fd, off_t off, size_t n, int salt)
{
	unsigned char buf[4096];
	for (size_t done = 0; done < n; done += sizeof(buf)) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		if (pread(fd, buf, k, off + done) != (ssize_t)k)
			return 0;
		for (size_t i = 0; i < k; i++)
			if (buf[i] != pattern(off + done + i, salt))
				return 0;
	}
	return 1;
}

static int zeros(int fd, off_t off, size_t n)
{
	unsigned char buf[4096];
	for (size_t done = 0; done < n; done += sizeof(buf)) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		if (pread(fd, buf, k, off + done) != (ssize_t)k)
			return 0;
		for (size_t i = 0; i < k; i++)
			if (buf[i])
				return 0;
	}
	return 1;
}

static int place(int fd, int at)
{
	if (fd < 0 || dup2(fd, at) != at)
		return -1;
	if (fd != at)
		close(fd);
	return at;
}

static char msg[8700];
static ino_t ino_after;
static char cwd[4096];

static const char *check(void)
{
	struct stat st;
	if (fstat(10, &st) || st.st_nlink != 0)
		return "FAIL: gone.txt has a name again\n";
	if ((st.st_mode & 07777) != 0640 || st.st_size != 100) {
		snprintf(msg, sizeof(msg), "FAIL: gone.txt mode %o size %lld\n", st.st_mode & 07777,
			 (long long)st.st_size);
		return msg;
	}
	if (!matches(10, 0, 100, 1))
		return "FAIL: gone.txt contents\n";
	if (lseek(10, 0, SEEK_CUR) != 17)
		return "FAIL: gone.txt position\n";
	if (lseek(11, 3, SEEK_CUR) != 20 || lseek(10, 0, SEEK_CUR) != 20)
		return "FAIL: fds 10 and 11 are not one open file\n";
	if ((fcntl(10, F_GETFL) & O_ACCMODE) != O_RDWR || pwrite(10, "x", 1, 100) != 1)
		return "FAIL: gone.txt is not writable\n";
	char link[4200], want[4200];
	ssize_t n = readlink("/proc/self/fd/10", link, sizeof(link) - 1);
	link[n < 0 ? 0 : n] = 0;
	snprintf(want, sizeof(want), "%s/gone.txt (deleted)", cwd);
	if (strcmp(link, want)) {
		snprintf(msg, sizeof(msg), "FAIL: fd 10 is %s\n", link);
		return msg;
	}
	if (fstat(12, &st) || st.st_nlink != 0 || st.st_size != 65536)
		return "FAIL: sparse.bin\n";
	if (!matches(12, 0, 4096, 2) || !matches(12, 40960, 4096, 3) || !zeros(12, 4096, 36864) ||
	    !zeros(12, 45056, 20480))
		return "FAIL: sparse.bin contents\n";
	if (lseek(12, 0, SEEK_CUR) != 40960)
		return "FAIL: sparse.bin position\n";
	if (fstat(13, &st) || st.st_ino != ino_after || st.st_nlink != 1)
		return "FAIL: after.txt is another file\n";
	if (access("before.txt", F_OK) == 0)
		return "FAIL: before.txt came back\n";
	if (lseek(13, 0, SEEK_CUR) != 5 || !matches(13, 0, 50, 4))
		return "FAIL: after.txt position or contents\n";
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int huge = argc > 2 && !strcmp(argv[2], "huge");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	if (!getcwd(cwd, sizeof(cwd)))
		return 3;
	umask(0);

	if (place(open("gone.txt", O_RDWR | O_CREAT | O_EXCL, 0640), 10) < 0 ||
	    put(10, 0, 100, 1) || lseek(10, 17, SEEK_SET) != 17 || dup2(10, 11) != 11 ||
	    unlink("gone.txt"))
		return 4;
	int s = open("sparse.bin", O_RDWR | O_CREAT | O_EXCL, 0600);
	if (s < 0 || ftruncate(s, 65536) || put(s, 0, 4096, 2) || put(s, 40960, 4096, 3) ||
	    fsync(s) || place(open("sparse.bin", O_RDONLY), 12) < 0 ||
	    lseek(12, 40960, SEEK_SET) != 40960 || unlink("sparse.bin"))
		return 4;
	close(s);
	int b = open("before.txt", O_RDWR | O_CREAT | O_EXCL, 0644);
	if (b < 0 || put(b, 0, 50, 4) || place(open("before.txt", O_RDONLY), 13) < 0 ||
	    lseek(13, 5, SEEK_SET) != 5 || rename("before.txt", "after.txt"))
		return 4;
	close(b);
	struct stat st;
	if (stat("after.txt", &st))
		return 4;
	ino_after = st.st_ino;
	if (huge) {
		int h = open("huge.bin", O_RDWR | O_CREAT | O_EXCL, 0600);
		if (h < 0 || put(h, 0, 2 << 20, 5) || fsync(h) || place(h, 14) < 0 ||
		    unlink("huge.bin"))
			return 4;
	}
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
