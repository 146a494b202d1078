/*
 * files_linked: a process holding files whose paths are gone while the
 * files still have links elsewhere (what criu's --link-remap is for):
 *
 *   fd 10  orig.txt       O_RDWR at 7, mode 0640, 100 bytes; linked as
 *                         other.txt, then orig.txt unlinked
 *   fd 11  sub/deep.txt   O_RDONLY at 3, 50 bytes; linked as deep.link,
 *                         unlinked, and sub/ removed
 *   fd 12  pipe.fifo      a FIFO, O_RDWR, "abc" in it; linked as
 *                         pipe.link, unlinked
 *   map    mapped.bin     4096 bytes mapped shared; linked as
 *                         mapped.link, unlinked
 *
 *   files_linked OUTFILE [criu]
 *
 * rcriu's restore opens such a file by its old name, linked again for
 * the moment, so that /proc names fd 10 "orig.txt (deleted)" as before;
 * CRIU's opens it through the link it made, "link_remap.N (deleted)":
 * "criu" takes either.
 * Its files live in its cwd. Prints facts, "ready", waits in sigsuspend
 * for SIGUSR1, then checks that each fd (and the mapping) is the same
 * inode as its other name, with its contents, position and one link
 * (no link_remap.N left over, no old name back), and writes PASS or
 * FAIL: why.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

static int put(int fd, size_t n, int salt)
{
	unsigned char buf[4096];
	for (size_t i = 0; i < n; i++)
		buf[i] = pattern(i, salt);
	return pwrite(fd, buf, n, 0) == (ssize_t)n ? 0 : -1;
}

static int matches(int fd, size_t n, int salt)
{
	unsigned char buf[4096];
	if (pread(fd, buf, n, 0) != (ssize_t)n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (buf[i] != pattern(i, salt))
			return 0;
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
static char cwd[4096];
static unsigned char *map;
static int by_criu;

/* Whether fd `fd` is the file at `other`, with one link. */
static const char *same(int fd, const char *other, const char *what)
{
	struct stat a, b;
	if (fstat(fd, &a) || stat(other, &b)) {
		snprintf(msg, sizeof(msg), "FAIL: %s cannot be read\n", what);
		return msg;
	}
	if (a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
		snprintf(msg, sizeof(msg), "FAIL: %s is another file than %s\n", what, other);
		return msg;
	}
	if (a.st_nlink != 1) {
		snprintf(msg, sizeof(msg), "FAIL: %s has %lu links\n", what,
			 (unsigned long)a.st_nlink);
		return msg;
	}
	return NULL;
}

static const char *check(void)
{
	const char *why;
	if ((why = same(10, "other.txt", "orig.txt")))
		return why;
	if (!matches(10, 100, 1))
		return "FAIL: orig.txt contents\n";
	if (lseek(10, 0, SEEK_CUR) != 7)
		return "FAIL: orig.txt position\n";
	if ((fcntl(10, F_GETFL) & O_ACCMODE) != O_RDWR || pwrite(10, "Z", 1, 0) != 1)
		return "FAIL: orig.txt is not writable\n";
	char c = 0;
	int o = open("other.txt", O_RDONLY);
	if (o < 0 || pread(o, &c, 1, 0) != 1 || c != 'Z')
		return "FAIL: a write to orig.txt does not show in other.txt\n";
	close(o);
	char link[4200], want[4200];
	ssize_t n = readlink("/proc/self/fd/10", link, sizeof(link) - 1);
	link[n < 0 ? 0 : n] = 0;
	snprintf(want, sizeof(want), "%s/orig.txt (deleted)", cwd);
	size_t dl = strlen(cwd);
	int criu_name = !strncmp(link, cwd, dl) && !strncmp(link + dl, "/link_remap.", 12);
	if (strcmp(link, want) && !(by_criu && criu_name)) {
		snprintf(msg, sizeof(msg), "FAIL: fd 10 is %s\n", link);
		return msg;
	}

	if ((why = same(11, "deep.link", "sub/deep.txt")))
		return why;
	if (!matches(11, 50, 2) || lseek(11, 0, SEEK_CUR) != 3)
		return "FAIL: sub/deep.txt contents or position\n";

	if ((why = same(12, "pipe.link", "pipe.fifo")))
		return why;
	char buf[8] = {0};
	if (read(12, buf, sizeof(buf)) != 3 || memcmp(buf, "abc", 3))
		return "FAIL: pipe.fifo lost its bytes\n";

	for (int i = 0; i < 4096; i++)
		if (map[i] != pattern(i, 3))
			return "FAIL: mapped.bin contents\n";
	map[100] = 'Q';
	int m = open("mapped.link", O_RDONLY);
	struct stat ms;
	if (m < 0 || pread(m, &c, 1, 100) != 1 || c != 'Q' || fstat(m, &ms) || ms.st_nlink != 1)
		return "FAIL: the mapping is not mapped.link's\n";
	close(m);

	const char *gone[] = {"orig.txt", "sub", "pipe.fifo", "mapped.bin"};
	for (unsigned i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		if (access(gone[i], F_OK) == 0) {
			snprintf(msg, sizeof(msg), "FAIL: %s came back\n", gone[i]);
			return msg;
		}
	DIR *d = opendir(".");
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "link_remap.", 11)) {
			snprintf(msg, sizeof(msg), "FAIL: %s is left over\n", e->d_name);
			return msg;
		}
	if (d)
		closedir(d);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	by_criu = argc > 2 && !strcmp(argv[2], "criu");
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

	if (place(open("orig.txt", O_RDWR | O_CREAT | O_EXCL, 0640), 10) < 0 || put(10, 100, 1) ||
	    lseek(10, 7, SEEK_SET) != 7 || link("orig.txt", "other.txt") || unlink("orig.txt"))
		return 4;
	int s;
	if (mkdir("sub", 0700) || (s = open("sub/deep.txt", O_RDWR | O_CREAT | O_EXCL, 0600)) < 0 ||
	    put(s, 50, 2) || place(open("sub/deep.txt", O_RDONLY), 11) < 0 ||
	    lseek(11, 3, SEEK_SET) != 3 || link("sub/deep.txt", "deep.link") ||
	    unlink("sub/deep.txt") || rmdir("sub"))
		return 5;
	close(s);
	if (mkfifo("pipe.fifo", 0600) || place(open("pipe.fifo", O_RDWR), 12) < 0 ||
	    write(12, "abc", 3) != 3 || link("pipe.fifo", "pipe.link") || unlink("pipe.fifo"))
		return 6;
	int mf = open("mapped.bin", O_RDWR | O_CREAT | O_EXCL, 0600);
	if (mf < 0 || ftruncate(mf, 4096) || put(mf, 4096, 3))
		return 7;
	map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mf, 0);
	if (map == MAP_FAILED || link("mapped.bin", "mapped.link") || unlink("mapped.bin"))
		return 7;
	close(mf);

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
