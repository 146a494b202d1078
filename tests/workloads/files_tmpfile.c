/*
 * files_tmpfile: unnamed temporary files (O_TMPFILE), as Python's
 * tempfile.TemporaryFile makes them.
 *
 *   files_tmpfile OUTFILE
 *
 *   fd 10  O_TMPFILE | O_RDWR in the cwd, 10000 bytes ('a' + i % 23),
 *          at position 1234
 *   fd 11  a dup of fd 10 (the same open file)
 *   fd 12  the same file opened again, read-only, through /proc/self/fd,
 *          at position 77
 *   fd 13  another O_TMPFILE, write-only and O_APPEND, 100 bytes
 *
 * Prints "ready", waits in sigsuspend for SIGUSR1, then checks each fd's
 * bytes, position, flags (O_TMPFILE's among them) and sharing, that the
 * files have no name, and that fd 10's file can still be given one
 * (linkat of an O_TMPFILE file), and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIZE 10000

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

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

static char byte_at(int i) { return 'a' + i % 23; }

static const char *check(void)
{
	static char buf[SIZE];
	struct stat st;
	if (fstat(10, &st) || st.st_nlink != 0 || st.st_size != SIZE)
		return "FAIL: fd 10 is not a nameless file of 10000 bytes\n";
	if ((fcntl(10, F_GETFL) & (O_TMPFILE | O_ACCMODE)) != (O_TMPFILE | O_RDWR))
		return "FAIL: fd 10's flags\n";
	if (lseek(10, 0, SEEK_CUR) != 1234 || lseek(11, 0, SEEK_CUR) != 1234)
		return "FAIL: fd 10's position\n";
	if (lseek(12, 0, SEEK_CUR) != 77 || (fcntl(12, F_GETFL) & O_ACCMODE) != O_RDONLY)
		return "FAIL: fd 12's position or mode\n";
	/* fd 11 shares fd 10's position, fd 12 does not. */
	lseek(11, 5000, SEEK_SET);
	if (lseek(10, 0, SEEK_CUR) != 5000 || lseek(12, 0, SEEK_CUR) != 77)
		return "FAIL: the sharing of fds 10-12\n";
	if (pread(12, buf, SIZE, 0) != SIZE)
		return "FAIL: reading fd 12\n";
	for (int i = 0; i < SIZE; i++)
		if (buf[i] != byte_at(i))
			return "FAIL: the bytes of the first file\n";
	struct stat st12;
	if (fstat(12, &st12) || st12.st_ino != st.st_ino)
		return "FAIL: fd 12 is another file\n";
	int fl = fcntl(13, F_GETFL);
	if ((fl & O_ACCMODE) != O_WRONLY || !(fl & O_APPEND) || !(fl & O_TMPFILE))
		return "FAIL: fd 13's flags\n";
	if (fstat(13, &st) || st.st_size != 100 || st.st_nlink != 0)
		return "FAIL: fd 13's file\n";
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", 10);
	unlink("linked");
	if (linkat(AT_FDCWD, path, AT_FDCWD, "linked", AT_SYMLINK_FOLLOW))
		return "FAIL: fd 10's file cannot be linked\n";
	int l = open("linked", O_RDONLY);
	if (l < 0 || pread(l, buf, 3, 9997) != 3 || buf[0] != byte_at(9997) ||
	    buf[2] != byte_at(9999))
		return "FAIL: the linked file\n";
	close(l);
	unlink("linked");
	return "PASS\n";
}

int main(int argc, char **argv)
{
	static char buf[SIZE];
	if (argc < 2)
		return 2;
	for (int i = 0; i < SIZE; i++)
		buf[i] = byte_at(i);
	int fd = open(".", O_TMPFILE | O_RDWR, 0640);
	if (fd < 0 || write(fd, buf, SIZE) != SIZE || dup2(fd, 10) != 10 || dup2(fd, 11) != 11)
		return 2;
	close(fd);
	lseek(10, 1234, SEEK_SET);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", 10);
	fd = open(path, O_RDONLY);
	if (fd < 0 || dup2(fd, 12) != 12)
		return 2;
	close(fd);
	lseek(12, 77, SEEK_SET);
	fd = open(".", O_TMPFILE | O_WRONLY | O_APPEND, 0600);
	if (fd < 0 || write(fd, buf, 100) != 100 || dup2(fd, 13) != 13)
		return 2;
	close(fd);

	signal(SIGUSR1, on_usr1);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	while (!stop)
		sigsuspend(&old);
	return verdict(argv[1], check());
}
