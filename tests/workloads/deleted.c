/*
 * deleted: a process holding, by other means than an fd of a file,
 * things whose names are gone, in its working directory (BASE):
 *
 *   cwd    BASE/gone, mode 0750, entered then removed
 *   fd 10  BASE/d2, mode 0710, opened (O_DIRECTORY) then removed
 *   fd 12  BASE, O_PATH (to look for the old names)
 *   fd 13  BASE/null2, a node of /dev/null's device (1, 3), mode 0640,
 *          opened read-write then removed
 *   fd 14  BASE/sym, a symbolic link to "no/such target", opened with
 *          O_PATH|O_NOFOLLOW then removed
 *   A      BASE/mapped.bin (3 pages of a pattern), mapped private and
 *          read-only, then removed (no fd holds it)
 *   B      the same file mapped shared, read-write; its second page
 *          written through B after the removal
 *
 *   deleted OUTFILE
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks:
 * the cwd (which no fd holds) and fd 10 are two directories with no
 * name left, of their modes; A and B map one file with no name left, with its
 * bytes (B's write seen through A); no old name exists in BASE; writes
 * PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define PAGE 4096
#define LEN (3 * PAGE)

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

static int place(int fd, int at)
{
	if (fd < 0 || dup2(fd, at) != at)
		return -1;
	if (fd != at)
		close(fd);
	return at;
}

static unsigned char *a, *b;
static char msg[512];

static unsigned char pattern(int i) { return (unsigned char)(i * 7 + 3); }

/* The file a mapping at p maps, through /proc/self/map_files. */
static int map_stat(unsigned char *p, struct stat *st)
{
	char path[128];
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)p,
		 (unsigned long)p + LEN);
	return stat(path, st);
}

static const char *check(void)
{
	struct stat cwd, d2, sa, sb;
	char buf[256];
	if (getcwd(buf, sizeof(buf)) || errno != ENOENT)
		return "FAIL: the cwd has a name\n";
	if (stat(".", &cwd) || fstat(10, &d2))
		return "FAIL: stat of the directories\n";
	if (cwd.st_nlink != 0 || cwd.st_mode != (S_IFDIR | 0750)) {
		snprintf(msg, sizeof(msg), "FAIL: the cwd: mode %o, %lu links\n", cwd.st_mode,
			 (unsigned long)cwd.st_nlink);
		return msg;
	}
	if (d2.st_nlink != 0 || d2.st_mode != (S_IFDIR | 0710)) {
		snprintf(msg, sizeof(msg), "FAIL: fd 10: mode %o, %lu links\n", d2.st_mode,
			 (unsigned long)d2.st_nlink);
		return msg;
	}
	if (d2.st_ino == cwd.st_ino)
		return "FAIL: fd 10 is the cwd\n";
	if (map_stat(a, &sa) || map_stat(b, &sb))
		return "FAIL: stat of the mapped file\n";
	if (sa.st_ino != sb.st_ino || sa.st_nlink != 0)
		return "FAIL: A and B are not one file with no name\n";
	for (int i = 0; i < LEN; i++) {
		unsigned char want = i >= PAGE && i < 2 * PAGE ? 0x5a : pattern(i);
		if (a[i] != want || b[i] != want) {
			snprintf(msg, sizeof(msg), "FAIL: byte %d: A %02x, B %02x, want %02x\n",
				 i, a[i], b[i], want);
			return msg;
		}
	}
	b[2 * PAGE] = 0xa5;
	if (a[2 * PAGE] != 0xa5)
		return "FAIL: A does not see B's write\n";
	struct stat n;
	if (fstat(13, &n) || n.st_nlink != 0 || n.st_mode != (S_IFCHR | 0640) ||
	    n.st_rdev != makedev(1, 3)) {
		snprintf(msg, sizeof(msg), "FAIL: fd 13: mode %o, device %u:%u\n", n.st_mode,
			 major(n.st_rdev), minor(n.st_rdev));
		return msg;
	}
	char z = 1;
	if (write(13, "x", 1) != 1 || read(13, &z, 1) != 0)
		return "FAIL: fd 13 is not a null device\n";
	char target[64] = {0};
	if (fstat(14, &n) || !S_ISLNK(n.st_mode) || n.st_nlink != 0 ||
	    readlinkat(14, "", target, sizeof(target) - 1) < 0 || strcmp(target, "no/such target")) {
		snprintf(msg, sizeof(msg), "FAIL: fd 14: mode %o, links %lu, target \"%s\"\n",
			 n.st_mode, (unsigned long)n.st_nlink, target);
		return msg;
	}
	if (fcntl(14, F_GETFL) != (O_PATH | O_NOFOLLOW | O_LARGEFILE))
		return "FAIL: fd 14's flags\n";
	const char *names[] = {"gone", "d2", "mapped.bin", "null2", "sym"};
	for (int i = 0; i < 5; i++)
		if (faccessat(12, names[i], F_OK, 0) == 0 || errno != ENOENT) {
			snprintf(msg, sizeof(msg), "FAIL: %s exists\n", names[i]);
			return msg;
		}
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
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	/* The verdict goes to BASE, whatever the cwd. */
	char out[4096];
	if (argv[1][0] != '/') {
		if (!getcwd(out, sizeof(out) - strlen(argv[1]) - 2))
			return 3;
		strcat(out, "/");
		strcat(out, argv[1]);
	} else {
		snprintf(out, sizeof(out), "%s", argv[1]);
	}

	unsigned char bytes[LEN];
	for (int i = 0; i < LEN; i++)
		bytes[i] = pattern(i);
	int f = open("mapped.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f < 0 || write(f, bytes, LEN) != LEN)
		return 3;
	a = mmap(NULL, LEN, PROT_READ, MAP_PRIVATE, f, 0);
	b = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	if (a == MAP_FAILED || b == MAP_FAILED || close(f) || unlink("mapped.bin"))
		return 3;
	memset(b + PAGE, 0x5a, PAGE);
	if (place(open(".", O_PATH | O_DIRECTORY), 12) < 0)
		return 4;
	if (mknod("null2", S_IFCHR | 0600, makedev(1, 3)) || chmod("null2", 0640) ||
	    place(open("null2", O_RDWR), 13) < 0 || unlink("null2"))
		return 4;
	if (symlink("no/such target", "sym") ||
	    place(open("sym", O_PATH | O_NOFOLLOW), 14) < 0 || unlink("sym"))
		return 4;
	if (mkdir("d2", 0700) || chmod("d2", 0710) ||
	    place(open("d2", O_RDONLY | O_DIRECTORY), 10) < 0 || rmdir("d2"))
		return 4;
	if (mkdir("gone", 0700) || chmod("gone", 0750) || chdir("gone") || rmdir("../gone"))
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
	return verdict(out, why ? why : "PASS\n");
}
