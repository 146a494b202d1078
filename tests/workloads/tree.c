/*
 * tree: a process tree with known shape and state, each process checking
 * itself after a restore.
 *
 *   tree OUTFILE MODE
 *
 * MODE:
 *   pair     the root and one child; a pipe from the root to the child
 *            with 3000 bytes in it; a file both hold (opened before the
 *            fork: one open file description) at position 100.
 *   deep     root -> child -> grandchild -> great-grandchild.
 *   groups   the child leads its own process group; its child (the
 *            grandchild) is in that group; a second child of the root is
 *            in the child's group too.
 *   session  the child leads a session of its own (setsid), its child is
 *            in it.
 *   zombies  four children that ended and are not reaped: one exited
 *            with status 7, one was killed by SIGTERM, one by a SIGSEGV
 *            it sent itself (no core), one exited with 9 in a process
 *            group whose leader (a child reaped) is gone; and a live one.
 *   stopped  a child stopped by SIGSTOP, one stopped by SIGTSTP (in a
 *            group of its own), and a live one.
 *   orphans  the root (a child subreaper) had a child A that led its own
 *            process group and forked B and C into it, and D, which
 *            leads a group of its own with its child E; then A exited:
 *            B, C and D are the root's now, B and C in the group of A,
 *            which is gone.
 *   deadsession  as orphans, but A led a session of its own (setsid):
 *            B, C, D and E are in the session of A, which is gone.
 *   exitsig  a child cloned with SIGUSR2 as its exit signal, one with
 *            none, and a plain one.
 *   sharing  a child cloned with CLONE_FILES | CLONE_FS (the root's fd
 *            table, cwd, root and umask), and a plain one; both and the
 *            root map one shared anonymous page.
 *   procfd   the root holds its child's /proc/PID/stat open (the
 *            restored root opens it again once its child exists).
 *   pipeline three children, a producer, a relay and a consumer, joined
 *            by two pipes: the producer wrote the numbers 0..999 into
 *            the first, the relay moved 500 of them, each plus one, into
 *            the second, the consumer read 200 of those: 500 numbers are
 *            in flight in one pipe, 300 in the other. Asked, the
 *            producer writes 1000..1999, the relay moves all 1500 on,
 *            the consumer reads all 1800 and checks that they run on
 *            from 201 to 2000.
 *   mapdel   the root maps a file shared and private (its private copy
 *            of page 1 rewritten), removes it (as a POSIX semaphore's
 *            file is) and forks two children that inherit both mappings:
 *            after the restore the shared page is still one page for all
 *            three, the private copies their own, the file's bytes there.
 *   epoll    the root registers an eventfd (ready, data 0x5eed) in an
 *            epoll instance and forks a child that closes the eventfd
 *            and keeps the instance: both see the event, through the
 *            target the root holds.
 *
 * Every live process but the root waits in read(2) on a pipe from its
 * parent; the root waits in sigsuspend. Prints each process as "procN
 * PID", "ready". On SIGUSR1 the root checks itself, then asks each child
 * down the tree to check itself (its pid, parent, group, session, what it
 * holds) and to answer; zombies are reaped and their statuses checked, a
 * stopped child is seen stopped and continued. PASS or the first failure
 * (with the process that saw it) goes to OUTFILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DATA 3000

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

/* What each process checks: filled before it forks. */
struct who {
	pid_t pid, ppid, pgid, sid;
};

static char result[512];

/* The shared page of mode "sharing": [0] set before the forks, [1] by
 * the root as it checks, [2] counted up by each child that saw it. */
static volatile int *shm;
/* Mode "mapdel": the private mapping of the deleted file, and how many
 * children share its shared mapping. */
static volatile int *priv;
static int shm_kids;
/* Mode "epoll": the instance and its target (the root's). */
static int ep_fd = -1, ev_fd = -1;


static void fail(const char *what, pid_t who)
{
	if (!result[0])
		snprintf(result, sizeof(result), "FAIL: process %d: %s\n", (int)who, what);
}

/* Mode "epoll": the event is there, with its data. */
static void epoll_check(pid_t me)
{
	struct epoll_event e;
	memset(&e, 0, sizeof(e));
	if (epoll_wait(ep_fd, &e, 1, 0) != 1 || e.data.u64 != 0x5eed || !(e.events & EPOLLIN))
		fail("the epoll instance's event", me);
}

static int check_ids(const struct who *w)
{
	if (getpid() != w->pid)
		return fail("its pid", w->pid), -1;
	if (getppid() != w->ppid)
		return fail("its parent", w->pid), -1;
	if (getpgrp() != w->pgid)
		return fail("its process group", w->pid), -1;
	if (getsid(0) != w->sid)
		return fail("its session", w->pid), -1;
	return 0;
}

/* A process below the root: waits for "check" on `in`, checks itself,
 * forwards to its own children (`outs`), and answers on `ans` with its
 * result or theirs. */
struct node {
	int in, ans;
	int nkids;
	int kid_out[4], kid_ans[4];
	struct who me;
	int data_fd; /* the pipe with DATA bytes, or -1 */
	int file_fd; /* the shared file, or -1 */
};

/* Mode "pipeline": the two pipes, and this process's part. */
static int pipe_a[2] = {-1, -1}, pipe_b[2] = {-1, -1};
enum { NONE, PRODUCER, RELAY, CONSUMER };
static int role;

/* Reads exactly n numbers from fd; 0 when it could. */
static int read_nums(int fd, unsigned *v, int n)
{
	size_t want = (size_t)n * sizeof(*v), got = 0;
	while (got < want) {
		ssize_t r = read(fd, (char *)v + got, want - got);
		if (r <= 0)
			return -1;
		got += r;
	}
	return 0;
}

static int write_nums(int fd, const unsigned *v, int n)
{
	return write(fd, v, n * sizeof(*v)) == (ssize_t)(n * sizeof(*v)) ? 0 : -1;
}

static void setup_producer(struct node *n)
{
	(void)n;
	role = PRODUCER;
	unsigned v[1000];
	for (unsigned i = 0; i < 1000; i++)
		v[i] = i;
	if (write_nums(pipe_a[1], v, 1000))
		_exit(9);
}

static void setup_relay(struct node *n)
{
	(void)n;
	role = RELAY;
	unsigned v[500];
	if (read_nums(pipe_a[0], v, 500))
		_exit(9);
	for (int i = 0; i < 500; i++)
		v[i]++;
	if (write_nums(pipe_b[1], v, 500))
		_exit(9);
}

static void setup_consumer(struct node *n)
{
	(void)n;
	role = CONSUMER;
	unsigned v[200];
	if (read_nums(pipe_b[0], v, 200))
		_exit(9);
}

/* The part of a pipeline process, once restored. */
static void pipeline_check(pid_t me)
{
	static unsigned v[2000];
	switch (role) {
	case PRODUCER:
		for (unsigned i = 0; i < 1000; i++)
			v[i] = 1000 + i;
		if (write_nums(pipe_a[1], v, 1000))
			fail("the producer's write", me);
		break;
	case RELAY:
		if (read_nums(pipe_a[0], v, 1500)) {
			fail("the relay's read", me);
			break;
		}
		for (unsigned i = 0; i < 1500; i++)
			if (v[i] != 500 + i) {
				fail("the numbers in flight in the first pipe", me);
				break;
			}
		for (int i = 0; i < 1500; i++)
			v[i]++;
		if (write_nums(pipe_b[1], v, 1500))
			fail("the relay's write", me);
		break;
	case CONSUMER:
		if (read_nums(pipe_b[0], v, 1800)) {
			fail("the consumer's read", me);
			break;
		}
		for (unsigned i = 0; i < 1800; i++)
			if (v[i] != 201 + i) {
				fail("the numbers in flight in the second pipe", me);
				break;
			}
		break;
	}
}

static void serve(struct node *n)
{
	char c;
	if (read(n->in, &c, 1) != 1)
		_exit(3);
	check_ids(&n->me);
	if (priv && (priv[1024] != 0x1234 || priv[100] != 77 || priv[0] != 1))
		fail("the private copy of the deleted file", n->me.pid);
	if (shm) {
		if (shm[0] != 1 || shm[1] != 0x5eed)
			fail("the shared page", n->me.pid);
		__atomic_add_fetch(&shm[2], 1, __ATOMIC_SEQ_CST);
	}
	if (n->data_fd >= 0) {
		static char buf[DATA];
		ssize_t got = 0, r;
		while (got < DATA && (r = read(n->data_fd, buf + got, DATA - got)) > 0)
			got += r;
		if (got != DATA)
			fail("the pipe's bytes", n->me.pid);
		for (int i = 0; i < got; i++)
			if (buf[i] != (char)('a' + i % 26)) {
				fail("the pipe's bytes changed", n->me.pid);
				break;
			}
	}
	if (n->file_fd >= 0 && lseek(n->file_fd, 0, SEEK_CUR) != 100)
		fail("the shared file's position", n->me.pid);
	pipeline_check(n->me.pid);
	if (ep_fd >= 0) {
		epoll_check(n->me.pid);
		if (fcntl(ev_fd, F_GETFD) != -1)
			fail("the eventfd it closed", n->me.pid);
	}
	for (int i = 0; i < n->nkids; i++) {
		char r[512];
		if (write(n->kid_out[i], "c", 1) != 1) {
			fail("a child does not listen", n->me.pid);
			break;
		}
		ssize_t got = read(n->kid_ans[i], r, sizeof(r) - 1);
		if (got <= 0) {
			fail("a child does not answer", n->me.pid);
			break;
		}
		r[got] = 0;
		/* Every child is asked, so that each one exits; the first
		 * failure is the verdict. */
		if (strcmp(r, "PASS\n") && !result[0])
			snprintf(result, sizeof(result), "%s", r);
	}
	const char *m = result[0] ? result : "PASS\n";
	if (write(n->ans, m, strlen(m)) < 0)
		_exit(4);
	_exit(result[0] ? 1 : 0);
}

/* Forks a node child of the calling process; `setup` runs in the child
 * before it serves (it may fork children of its own). Returns the
 * parent's ends. */
struct link {
	pid_t pid;
	int out, ans;
};

static struct link spawn(struct node *parent_node, void (*setup)(struct node *), int data_fd,
			 int file_fd)
{
	int down[2], up[2];
	struct link l = {-1, -1, -1};
	if (pipe(down) || pipe(up))
		return l;
	pid_t me = getpid(), pg = getpgrp(), sid = getsid(0);
	pid_t p = fork();
	if (p == 0) {
		struct node n;
		memset(&n, 0, sizeof(n));
		close(down[1]);
		close(up[0]);
		n.in = down[0];
		n.ans = up[1];
		n.data_fd = data_fd;
		n.file_fd = file_fd;
		n.me.pid = getpid();
		n.me.ppid = me;
		n.me.pgid = pg;
		n.me.sid = sid;
		if (setup)
			setup(&n);
		/* Set up, with its own children: the parent may go on. */
		if (write(n.ans, "r", 1) != 1)
			_exit(8);
		serve(&n);
	}
	close(down[0]);
	close(up[1]);
	char r;
	if (p > 0 && read(up[0], &r, 1) != 1)
		return l;
	l.pid = p;
	l.out = down[1];
	l.ans = up[0];
	if (parent_node && parent_node->nkids < 4) {
		parent_node->kid_out[parent_node->nkids] = l.out;
		parent_node->kid_ans[parent_node->nkids] = l.ans;
		parent_node->nkids++;
	}
	return l;
}

static void print_pid(const char *name, pid_t p)
{
	printf("%s %d\n", name, (int)p);
}

static void setup_epoll_child(struct node *n)
{
	(void)n;
	close(ev_fd);
}

static void setup_deep3(struct node *n) { (void)n; }
static void setup_deep2(struct node *n) { spawn(n, setup_deep3, -1, -1); }
static void setup_deep1(struct node *n) { spawn(n, setup_deep2, -1, -1); }

static void setup_leader(struct node *n)
{
	if (setpgid(0, 0))
		_exit(5);
	n->me.pgid = getpid();
	spawn(n, NULL, -1, -1);
}

static pid_t group_of_second;
static void setup_member(struct node *n)
{
	if (setpgid(0, group_of_second))
		_exit(6);
	n->me.pgid = group_of_second;
}

static void setup_session(struct node *n)
{
	if (setsid() < 0)
		_exit(7);
	n->me.pgid = getpid();
	n->me.sid = getpid();
	spawn(n, NULL, -1, -1);
}

/* A node whose ends the root made: it serves them with `me` as it
 * should be. */
static void orphan(int in, int ans, pid_t ppid, pid_t pgid, int lead, int with_child)
{
	struct node n;
	memset(&n, 0, sizeof(n));
	if (lead && setpgid(0, 0))
		_exit(5);
	n.in = in;
	n.ans = ans;
	n.data_fd = n.file_fd = -1;
	n.me.pid = getpid();
	n.me.ppid = ppid;
	n.me.pgid = lead ? getpid() : pgid;
	n.me.sid = getsid(0);
	if (with_child)
		spawn(&n, NULL, -1, -1);
	serve(&n);
}

/* A child cloned with `sig` as its exit signal: it serves `in`/`ans`. */
static int cloned_in, cloned_ans;
static pid_t cloned_parent;
static int cloned_main(void *arg)
{
	(void)arg;
	struct node n;
	memset(&n, 0, sizeof(n));
	n.in = cloned_in;
	n.ans = cloned_ans;
	n.data_fd = n.file_fd = -1;
	n.me.pid = getpid();
	n.me.ppid = cloned_parent;
	n.me.pgid = getpgrp();
	n.me.sid = getsid(0);
	serve(&n);
	return 0;
}

static struct link clone_with(struct node *root, int sig)
{
	static char stacks[2][64 * 1024] __attribute__((aligned(16)));
	static int used;
	int down[2], up[2];
	struct link l = {-1, -1, -1};
	if (pipe(down) || pipe(up) || used >= 2)
		return l;
	cloned_in = down[0];
	cloned_ans = up[1];
	cloned_parent = getpid();
	l.pid = clone(cloned_main, stacks[used++] + sizeof(stacks[0]), sig, NULL);
	/* Its ends are in the table it shares with the root, if it does. */
	if (!(sig & CLONE_FILES)) {
		close(down[0]);
		close(up[1]);
	}
	l.out = down[1];
	l.ans = up[0];
	root->kid_out[root->nkids] = l.out;
	root->kid_ans[root->nkids] = l.ans;
	root->nkids++;
	return l;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	const char *mode = argv[2];
	signal(SIGUSR1, on_usr1);
	signal(SIGPIPE, SIG_IGN);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	struct node root;
	memset(&root, 0, sizeof(root));
	root.me.pid = getpid();
	root.me.ppid = getppid();
	root.me.pgid = getpgrp();
	root.me.sid = getsid(0);
	pid_t zombie_exit = 0, zombie_kill = 0, zombie_segv = 0, stopped = 0, tstopped = 0, fdt_child = 0,
	      plain_child = 0, zombie_grouped = 0, zombie_group = 0;
	int file_fd = -1;
	if (!strcmp(mode, "pair")) {
		int data[2];
		if (pipe(data))
			return 2;
		fcntl(data[1], F_SETPIPE_SZ, 65536);
		char buf[DATA];
		for (int i = 0; i < DATA; i++)
			buf[i] = 'a' + i % 26;
		if (write(data[1], buf, DATA) != DATA)
			return 2;
		file_fd = open("shared.txt", O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (file_fd < 0 || write(file_fd, buf, 200) != 200 || lseek(file_fd, 100, SEEK_SET) != 100)
			return 2;
		struct link l = spawn(&root, NULL, data[0], file_fd);
		close(data[0]);
		print_pid("proc1", l.pid);
		/* The root keeps the write end: the pipe stays open. */
	} else if (!strcmp(mode, "deep")) {
		struct link l = spawn(&root, setup_deep1, -1, -1);
		print_pid("proc1", l.pid);
	} else if (!strcmp(mode, "groups")) {
		struct link a = spawn(&root, setup_leader, -1, -1);
		/* Wait until a leads its group. */
		while (getpgid(a.pid) != a.pid)
			usleep(100);
		group_of_second = a.pid;
		struct link b = spawn(&root, setup_member, -1, -1);
		while (getpgid(b.pid) != a.pid)
			usleep(100);
		print_pid("proc1", a.pid);
		print_pid("proc2", b.pid);
	} else if (!strcmp(mode, "session")) {
		struct link a = spawn(&root, setup_session, -1, -1);
		while (getsid(a.pid) != a.pid)
			usleep(100);
		print_pid("proc1", a.pid);
	} else if (!strcmp(mode, "zombies")) {
		zombie_exit = fork();
		if (zombie_exit == 0)
			_exit(7);
		zombie_kill = fork();
		if (zombie_kill == 0) {
			for (;;)
				pause();
		}
		kill(zombie_kill, SIGTERM);
		/* One that faulted, as it were: SIGSEGV sent to itself, no
		 * core dumped. */
		zombie_segv = fork();
		if (zombie_segv == 0) {
			struct rlimit no = {0, 0};
			setrlimit(RLIMIT_CORE, &no);
			kill(getpid(), SIGSEGV);
			_exit(0);
		}
		/* One in a group whose leader is gone: a child leads a group,
		 * makes the zombie its sibling (CLONE_PARENT: the root's child,
		 * in its group) and ends, reaped. */
		zombie_group = fork();
		if (zombie_group == 0) {
			if (setpgid(0, 0))
				_exit(1);
			long z = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
			if (z == 0)
				_exit(9);
			_exit(z > 0 ? 0 : 1);
		}
		int gst;
		if (waitpid(zombie_group, &gst, 0) != zombie_group || !WIFEXITED(gst) ||
		    WEXITSTATUS(gst))
			return 2;
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		if (waitid(P_PGID, zombie_group, &si, WEXITED | WNOWAIT))
			return 2;
		zombie_grouped = si.si_pid;
		/* All ended, none reaped (WNOWAIT). */
		waitid(P_PID, zombie_exit, &si, WEXITED | WNOWAIT);
		waitid(P_PID, zombie_kill, &si, WEXITED | WNOWAIT);
		waitid(P_PID, zombie_segv, &si, WEXITED | WNOWAIT);
		struct link l = spawn(&root, NULL, -1, -1);
		print_pid("proc1", l.pid);
		print_pid("zombie_exit", zombie_exit);
		print_pid("zombie_kill", zombie_kill);
	} else if (!strcmp(mode, "stopped")) {
		stopped = fork();
		if (stopped == 0) {
			for (;;)
				pause();
		}
		kill(stopped, SIGSTOP);
		siginfo_t si;
		waitid(P_PID, stopped, &si, WSTOPPED | WNOWAIT);
		/* One stopped by SIGTSTP, in a group of its own (in the root's
		 * group, orphaned, SIGTSTP would be discarded). */
		tstopped = fork();
		if (tstopped == 0) {
			for (;;)
				pause();
		}
		setpgid(tstopped, tstopped);
		kill(tstopped, SIGTSTP);
		waitid(P_PID, tstopped, &si, WSTOPPED | WNOWAIT);
		struct link l = spawn(&root, NULL, -1, -1);
		print_pid("proc1", l.pid);
		print_pid("stopped", stopped);
		print_pid("tstopped", tstopped);
	} else if (!strcmp(mode, "orphans") || !strcmp(mode, "deadsession")) {
		int session = !strcmp(mode, "deadsession");
		if (prctl(PR_SET_CHILD_SUBREAPER, 1))
			return 2;
		int p[3][2][2];
		for (int i = 0; i < 3; i++)
			if (pipe(p[i][0]) || pipe(p[i][1]))
				return 2;
		pid_t me = getpid();
		int ready[2];
		if (pipe(ready))
			return 2;
		pid_t a = fork();
		if (a == 0) {
			if (session ? setsid() < 0 : setpgid(0, 0) != 0)
				_exit(5);
			pid_t kids[3];
			for (int i = 0; i < 3; i++) {
				kids[i] = fork();
				if (kids[i] == 0)
					orphan(p[i][0][0], p[i][1][1], me, getpgrp(), i == 2, i == 2);
			}
			/* D leads its group before A goes. */
			while (getpgid(kids[2]) != kids[2])
				usleep(100);
			if (write(ready[1], kids, sizeof(kids)) != sizeof(kids))
				_exit(6);
			_exit(0);
		}
		pid_t kids[3];
		if (read(ready[0], kids, sizeof(kids)) != sizeof(kids))
			return 2;
		if (waitpid(a, NULL, 0) != a)
			return 2;
		for (int i = 0; i < 3; i++) {
			root.kid_out[i] = p[i][0][1];
			root.kid_ans[i] = p[i][1][0];
			print_pid(i == 2 ? "leader" : "member", kids[i]);
		}
		root.nkids = 3;
		print_pid("gone", a);
	} else if (!strcmp(mode, "exitsig")) {
		/* The first child's end must not end the root. */
		signal(SIGUSR2, SIG_IGN);
		struct link a = clone_with(&root, SIGUSR2);
		struct link b = clone_with(&root, 0);
		struct link c = spawn(&root, NULL, -1, -1);
		print_pid("usr2", a.pid);
		print_pid("none", b.pid);
		print_pid("plain", c.pid);
	} else if (!strcmp(mode, "sharing")) {
		shm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (shm == MAP_FAILED)
			return 2;
		shm[0] = 1;
		fdt_child = clone_with(&root, SIGCHLD | CLONE_FILES | CLONE_FS).pid;
		plain_child = spawn(&root, NULL, -1, -1).pid;
		print_pid("fdt", fdt_child);
		print_pid("plain", plain_child);
		shm_kids = 2;
	} else if (!strcmp(mode, "procfd")) {
		struct link l = spawn(&root, NULL, -1, -1);
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)l.pid);
		if (open(path, O_RDONLY) < 0)
			return 2;
		print_pid("proc1", l.pid);
	} else if (!strcmp(mode, "epoll")) {
		ev_fd = eventfd(1, 0);
		ep_fd = epoll_create1(0);
		struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0x5eed};
		if (ev_fd < 0 || ep_fd < 0 || epoll_ctl(ep_fd, EPOLL_CTL_ADD, ev_fd, &e))
			return 2;
		struct link l = spawn(&root, setup_epoll_child, -1, -1);
		print_pid("proc1", l.pid);
	} else if (!strcmp(mode, "pipeline")) {
		if (pipe(pipe_a) || pipe(pipe_b))
			return 2;
		print_pid("producer", spawn(&root, setup_producer, -1, -1).pid);
		print_pid("relay", spawn(&root, setup_relay, -1, -1).pid);
		print_pid("consumer", spawn(&root, setup_consumer, -1, -1).pid);
	} else if (!strcmp(mode, "mapdel")) {
		int fd = open("mapped.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, 8192))
			return 2;
		shm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		priv = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (shm == MAP_FAILED || priv == MAP_FAILED)
			return 2;
		shm[0] = 1;
		shm[100] = 77;
		priv[1024] = 0x1234;
		close(fd);
		unlink("mapped.bin");
		print_pid("proc1", spawn(&root, NULL, -1, -1).pid);
		print_pid("proc2", spawn(&root, NULL, -1, -1).pid);
		shm_kids = 2;
	} else {
		return 2;
	}
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	while (!stop)
		sigsuspend(&old);

	check_ids(&root.me);
	if (fdt_child) {
		pid_t me = getpid();
		/* kcmp(2): 0 when both hold the same. */
		if (syscall(SYS_kcmp, me, fdt_child, 2 /* KCMP_FILES */, 0, 0) != 0)
			fail("the fd table it shares with its child", me);
		if (syscall(SYS_kcmp, me, fdt_child, 3 /* KCMP_FS */, 0, 0) != 0)
			fail("the cwd and root it shares with its child", me);
		if (syscall(SYS_kcmp, me, plain_child, 2, 0, 0) == 0)
			fail("an fd table shared with the plain child", me);
	}
	if (shm)
		shm[1] = 0x5eed;
	if (priv && (priv[1024] != 0x1234 || priv[100] != 77 || priv[0] != 1 || shm[1024] != 0))
		fail("the deleted file's private copy", root.me.pid);
	if (ep_fd >= 0)
		epoll_check(root.me.pid);
	if (file_fd >= 0 && lseek(file_fd, 0, SEEK_CUR) != 100)
		fail("the shared file's position", root.me.pid);
	if (zombie_exit) {
		int st;
		if (waitpid(zombie_exit, &st, WNOHANG) != zombie_exit || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 7)
			fail("the zombie that exited with 7", root.me.pid);
		if (waitpid(zombie_kill, &st, WNOHANG) != zombie_kill || !WIFSIGNALED(st) ||
		    WTERMSIG(st) != SIGTERM)
			fail("the zombie killed by SIGTERM", root.me.pid);
		if (waitpid(zombie_segv, &st, WNOHANG) != zombie_segv || !WIFSIGNALED(st) ||
		    WTERMSIG(st) != SIGSEGV || WCOREDUMP(st))
			fail("the zombie killed by SIGSEGV", root.me.pid);
		if (getpgid(zombie_grouped) != zombie_group)
			fail("the zombie's group, whose leader is gone", root.me.pid);
		if (waitpid(zombie_grouped, &st, WNOHANG) != zombie_grouped || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 9)
			fail("the zombie in a group whose leader is gone", root.me.pid);
	}
	if (stopped) {
		char path[64], stat[512];
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)stopped);
		int fd = open(path, O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, stat, sizeof(stat) - 1) : -1;
		if (fd >= 0)
			close(fd);
		stat[n > 0 ? n : 0] = 0;
		char *st = strrchr(stat, ')');
		if (!st || st[2] != 'T')
			fail("the stopped child runs", root.me.pid);
		kill(stopped, SIGKILL);
		waitpid(stopped, NULL, 0);
	}
	if (tstopped) {
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, tstopped, &si, WSTOPPED | WNOWAIT | WNOHANG) ||
		    si.si_pid != tstopped || si.si_status != SIGTSTP)
			fail("the child stopped by SIGTSTP", root.me.pid);
		kill(tstopped, SIGKILL);
		waitpid(tstopped, NULL, 0);
	}
	for (int i = 0; i < root.nkids; i++) {
		char r[512];
		if (write(root.kid_out[i], "c", 1) != 1) {
			fail("a child does not listen", root.me.pid);
			break;
		}
		ssize_t got = read(root.kid_ans[i], r, sizeof(r) - 1);
		if (got <= 0) {
			fail("a child does not answer", root.me.pid);
			break;
		}
		r[got] = 0;
		/* Every child is asked, so that each one exits; the first
		 * failure is the verdict. */
		if (strcmp(r, "PASS\n") && !result[0])
			snprintf(result, sizeof(result), "%s", r);
	}
	if (shm_kids && !result[0] && shm[2] != shm_kids)
		fail("the children's marks on the shared page", getpid());
	/* Reap the children. */
	while (waitpid(-1, NULL, __WALL) > 0)
		;
	FILE *f = fopen(argv[1], "w");
	if (!f)
		return 2;
	fputs(result[0] ? result : "PASS\n", f);
	fclose(f);
	return result[0] ? 1 : 0;
}
