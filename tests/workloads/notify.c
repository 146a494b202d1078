/*
 * notify: a process watching files with inotify, in its working
 * directory (a directory of its own):
 *
 *   fd 10  inotify, non-blocking: wd 1 on "." (create, delete, moved
 *          to), wd 2 on a.txt (modify, close-write), wd 3 on b.txt
 *          (attrib, one-shot), wd 5 on d.txt (open, excl-unlink): wd 4
 *          (on c.txt) was removed, and the event of its removal read
 *   fd 11  inotify, close-on-exec: wd 4 on "sub" (every event), after
 *          three watches added and removed
 *   fd 12  fanotify (notification class, non-blocking): a mark on f.txt
 *          (modify, close-write), a mark on the mount of "." (exec
 *          opens; access ignored, surviving modification)
 *
 *   notify OUTFILE [deleted|outside|filesystem]
 *
 * "deleted": fd 13 holds c.txt open, fd 10 watches it (wd 6, attrib),
 * and c.txt is removed: a watch on a file no path names, which a restore
 * puts on the ghost it makes again for fd 13 (another inode: wd 6's
 * line of fdinfo is only checked for its mask, and a chmod through fd
 * 13 must bring its event). Making and removing that ghost again may
 * leave two events queued on fd 10 (c.txt deleted in ".", wd 6's link
 * count changed), and only those. "outside": fd 10 watches c.txt (wd 6,
 * attrib) and nothing else of the process holds it: the test holds it
 * and removes it, a watch on a removed file the dump cannot hold (it
 * refuses it); the same two events may then be queued.
 * "filesystem": fd 12 marks the whole filesystem of "." too (the dump
 * refuses it: CRIU's images have no such mark).
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks:
 * each fd's fdinfo is what it was (flags, every watch with its
 * descriptor, inode, device, mask and file handle), no event is queued,
 * and each action on the files brings the events it should, with the
 * watch descriptors they had (one-shot: once), fanotify's for this
 * process's own actions too; writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

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

static char msg[8192];
static int deleted, held;

static int by_text(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The fdinfo of fd without pos, mnt_id and ino (the anonymous inode's),
 * its lines sorted. */
static int fdinfo(int fd, char *out, size_t n)
{
	char path[64], buf[512];
	static char lines[32][512];
	char *sorted[32];
	int nlines = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (nlines < 32 && fgets(buf, sizeof(buf), f)) {
		if (!strncmp(buf, "pos:", 4) || !strncmp(buf, "mnt_id:", 7) || !strncmp(buf, "ino:", 4))
			continue;
		/* The ghost's watch: its mask alone. */
		if (deleted && !strncmp(buf, "inotify wd:6 ", 13)) {
			char *m = strstr(buf, " mask:");
			snprintf(buf, sizeof(buf), "inotify wd:6 mask:%.8s\n", m ? m + 6 : "?");
		}
		snprintf(lines[nlines], sizeof(lines[0]), "%s", buf);
		sorted[nlines] = lines[nlines];
		nlines++;
	}
	fclose(f);
	qsort(sorted, nlines, sizeof(sorted[0]), by_text);
	size_t used = 0;
	out[0] = 0;
	for (int i = 0; i < nlines && used < n; i++)
		used += snprintf(out + used, n - used, "%s", sorted[i]);
	return 0;
}

static char before[3][2048];

static int drain(int fd)
{
	char buf[4096];
	int n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	return n < 0 && errno == EAGAIN ? 0 : -1;
}

/* The next event on fd (non-blocking reads), as "wd mask name". */
static const char *next_event(int fd, char *out, size_t n)
{
	static char buf[4096] __attribute__((aligned(8)));
	static int len, at;
	static int of = -1;
	if (of != fd) {
		len = at = 0;
		of = fd;
	}
	if (at >= len) {
		len = read(fd, buf, sizeof(buf));
		at = 0;
		if (len <= 0) {
			len = 0;
			snprintf(out, n, "none");
			return out;
		}
	}
	struct inotify_event *e = (struct inotify_event *)(buf + at);
	snprintf(out, n, "%d %#x %s", e->wd, e->mask, e->len ? e->name : "-");
	at += sizeof(*e) + e->len;
	return out;
}

static const char *expect(int fd, const char *want, const char *after)
{
	char got[512];
	next_event(fd, got, sizeof(got));
	if (strcmp(got, want)) {
		snprintf(msg, sizeof(msg), "FAIL: after %s, fd %d gives event \"%s\", want \"%s\"\n",
			 after, fd, got, want);
		return msg;
	}
	return NULL;
}

static const char *check(void)
{
	char now[2048];
	int fds[3] = {10, 11, 12};
	for (int i = 0; i < 3; i++)
		if (fdinfo(fds[i], now, sizeof(now)) || strcmp(now, before[i])) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d fdinfo\n%.2000s\nwas\n%.2000s", fds[i],
				 now, before[i]);
			return msg;
		}
	if ((fcntl(10, F_GETFL) & O_NONBLOCK) == 0 || (fcntl(11, F_GETFD) & FD_CLOEXEC) == 0)
		return "FAIL: flags\n";
	int queued = -1;
	if (deleted) {
		/* What making and removing the ghost again may leave. */
		char got[512], gone[64], links[64];
		snprintf(gone, sizeof(gone), "1 %#x c.txt", IN_DELETE);
		snprintf(links, sizeof(links), "6 %#x -", IN_ATTRIB);
		while (strcmp(next_event(10, got, sizeof(got)), "none"))
			if (strcmp(got, gone) && strcmp(got, links)) {
				snprintf(msg, sizeof(msg), "FAIL: fd 10 had \"%s\" queued\n", got);
				return msg;
			}
	}
	if (ioctl(10, FIONREAD, &queued) || queued != 0)
		return "FAIL: events queued on fd 10\n";
	fcntl(11, F_SETFL, O_NONBLOCK);
	const char *why;
	char e[64];
	if (held) {
		struct stat st;
		if (fstat(13, &st) || st.st_nlink != 0 || fchmod(13, 0644))
			return "FAIL: fd 13 is not the removed c.txt\n";
		snprintf(e, sizeof(e), "6 %#x -", IN_ATTRIB);
		if ((why = expect(10, e, "chmod of the removed c.txt")))
			return why;
	}
	int fd = open("a.txt", O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, "x", 1) != 1 || close(fd))
		return "FAIL: writing a.txt\n";
	snprintf(e, sizeof(e), "2 %#x -", IN_MODIFY);
	if ((why = expect(10, e, "a write to a.txt")))
		return why;
	snprintf(e, sizeof(e), "2 %#x -", IN_CLOSE_WRITE);
	if ((why = expect(10, e, "closing a.txt")))
		return why;
	if (chmod("b.txt", 0640))
		return "FAIL: chmod b.txt\n";
	snprintf(e, sizeof(e), "3 %#x -", IN_ATTRIB);
	if ((why = expect(10, e, "chmod b.txt")))
		return why;
	snprintf(e, sizeof(e), "3 %#x -", IN_IGNORED);
	if ((why = expect(10, e, "a one-shot event")))
		return why;
	if (chmod("b.txt", 0600))
		return "FAIL: chmod b.txt again\n";
	if ((why = expect(10, "none", "chmod b.txt again (one-shot)")))
		return why;
	fd = open("d.txt", O_RDONLY);
	if (fd < 0 || close(fd))
		return "FAIL: opening d.txt\n";
	snprintf(e, sizeof(e), "5 %#x -", IN_OPEN);
	if ((why = expect(10, e, "opening d.txt")))
		return why;
	fd = open("e.txt", O_WRONLY | O_CREAT, 0600);
	if (fd < 0 || close(fd))
		return "FAIL: creating e.txt\n";
	snprintf(e, sizeof(e), "1 %#x e.txt", IN_CREATE);
	if ((why = expect(10, e, "creating e.txt")))
		return why;
	if ((why = expect(10, "none", "creating e.txt")))
		return why;
	fd = open("sub/x", O_WRONLY | O_CREAT, 0600);
	if (fd < 0 || close(fd))
		return "FAIL: creating sub/x\n";
	snprintf(e, sizeof(e), "4 %#x x", IN_CREATE);
	if ((why = expect(11, e, "creating sub/x")))
		return why;
	snprintf(e, sizeof(e), "4 %#x x", IN_OPEN);
	if ((why = expect(11, e, "creating sub/x")))
		return why;
	/* fanotify: this process's modification of f.txt, then its close. */
	fd = open("f.txt", O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, "y", 1) != 1 || close(fd))
		return "FAIL: writing f.txt\n";
	unsigned long long seen = 0;
	char buf[4096] __attribute__((aligned(8)));
	ssize_t len;
	while ((len = read(12, buf, sizeof(buf))) > 0) {
		struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
		for (; FAN_EVENT_OK(m, len); m = FAN_EVENT_NEXT(m, len)) {
			if (m->pid == getpid())
				seen |= m->mask;
			if (m->fd >= 0)
				close(m->fd);
		}
	}
	if (seen != (FAN_MODIFY | FAN_CLOSE_WRITE)) {
		snprintf(msg, sizeof(msg), "FAIL: fanotify reports %#llx\n", seen);
		return msg;
	}
	return NULL;
}

static int touch(const char *name)
{
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "0123456789", 10) != 10)
		return -1;
	return close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	held = argc > 2 && !strcmp(argv[2], "deleted");
	int outside = argc > 2 && !strcmp(argv[2], "outside");
	deleted = held || outside;
	int filesystem = argc > 2 && !strcmp(argv[2], "filesystem");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);

	if (touch("a.txt") || touch("b.txt") || touch("c.txt") || touch("d.txt") || touch("f.txt") ||
	    mkdir("sub", 0700))
		return 3;
	if (place(inotify_init1(IN_NONBLOCK), 10) < 0 ||
	    inotify_add_watch(10, ".", IN_CREATE | IN_DELETE | IN_MOVED_TO) != 1 ||
	    inotify_add_watch(10, "a.txt", IN_MODIFY | IN_CLOSE_WRITE) != 2 ||
	    inotify_add_watch(10, "b.txt", IN_ATTRIB | IN_ONESHOT) != 3 ||
	    inotify_add_watch(10, "c.txt", IN_OPEN) != 4 || inotify_rm_watch(10, 4) ||
	    inotify_add_watch(10, "d.txt", IN_OPEN | IN_EXCL_UNLINK) != 5 || drain(10))
		return 4;
	if (place(inotify_init1(0), 11) < 0 || fcntl(11, F_SETFD, FD_CLOEXEC))
		return 5;
	for (int i = 1; i <= 3; i++)
		if (inotify_add_watch(11, "c.txt", IN_OPEN) != i || inotify_rm_watch(11, i))
			return 5;
	if (inotify_add_watch(11, "sub", IN_ALL_EVENTS) != 4)
		return 5;
	fcntl(11, F_SETFL, O_NONBLOCK);
	if (drain(11))
		return 5;
	fcntl(11, F_SETFL, 0);
	if (outside && (inotify_add_watch(10, "c.txt", IN_ATTRIB) != 6 || drain(10)))
		return 5;
	if (held && (place(open("c.txt", O_RDONLY), 13) < 0 ||
			inotify_add_watch(10, "c.txt", IN_ATTRIB) != 6 || unlink("c.txt") ||
			drain(10)))
		return 5;
	if (place(fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE), 12) < 0 ||
	    fanotify_mark(12, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, "f.txt") ||
	    fanotify_mark(12, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC, AT_FDCWD, ".") ||
	    fanotify_mark(12, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK |
				  FAN_MARK_IGNORED_SURV_MODIFY,
			  FAN_ACCESS, AT_FDCWD, ".") ||
	    (filesystem &&
	     fanotify_mark(12, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC, AT_FDCWD, ".")))
		return 6;
	if (fdinfo(10, before[0], sizeof(before[0])) || fdinfo(11, before[1], sizeof(before[1])) ||
	    fdinfo(12, before[2], sizeof(before[2])))
		return 6;

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
