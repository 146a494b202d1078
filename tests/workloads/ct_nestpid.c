// build: -pthread
/*
 * ct_nestpid: the init of a container (R, pid 1) with a child A that
 * makes a pid namespace nested in the container's (unshare(CLONE_NEWPID),
 * then a fork, as `unshare --pid --fork` does): B is pid 1 there, and B's
 * child C pid 2; C has a second thread (its tid at both levels too).
 *
 *   ct_nestpid OUTFILE [MODE]
 *
 * MODE "shared-group": B stays in A's session and group (led from outside
 * its namespace) instead of making a session of its own.
 * MODE "unshared": A unshares its pid namespace and forks nothing (its
 * children's namespace is not made yet); no B, no C.
 * MODE "inner-proc": B also mounts a proc of its namespace at /tmp/iproc,
 * where it must be 1 (its self link) and C 2.
 * MODE "own-group": B leads a group of its own (1 in its namespace) but
 * stays in the container init's session.
 * MODE "pidfd": C holds a pidfd of itself.
 * MODE "zombie": C also has a child that ended with status 7, not reaped
 * (a zombie of the nested namespace), which C reaps once checked.
 * MODE "deep": C also unshares its pid namespace and forks D, pid 1 of a
 * namespace nested in B's (three levels under the host's).
 *
 * Each process notes its getpid(), getppid() and the NSpid line of
 * /proc/self/status (the container's proc: its pids from the container's
 * namespace down), and says so on a pipe; R then writes
 * "pids A B-in-container C-in-container" and "ready" to stdout and every
 * process waits in sigsuspend. On SIGUSR1 (R's from `runc kill`), each
 * checks its pid, parent and NSpid line again, passes SIGUSR1 to its
 * child and waits for it (its exit status says whether the child passed),
 * A also that its children's pid namespace is B's (or, "unshared", that a
 * child it forks now is pid 1 of a new one). R writes PASS, or FAIL: and
 * every process's complaints, to OUTFILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void on_usr1(int sig) { (void)sig; go = 1; }

/* What one process noted before the dump. */
struct self {
	const char *name;
	pid_t pid, ppid;
	char nspid[128];
};

static char why[4096];

static void complain(const struct self *s, const char *fmt, long a, long b)
{
	char line[256];
	snprintf(line, sizeof(line), fmt, a, b);
	size_t n = strlen(why);
	snprintf(why + n, sizeof(why) - n, " %s: %s;", s->name, line);
}

static void nspid_line(char *out, size_t len)
{
	out[0] = 0;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "NSpid:", 6)) {
			size_t n = strnlen(line, len - 1);
			memcpy(out, line, n);
			out[n] = 0;
			break;
		}
	fclose(f);
	size_t n = strlen(out);
	if (n && out[n - 1] == '\n')
		out[n - 1] = 0;
}

static void note(struct self *s, const char *name)
{
	s->name = name;
	s->pid = getpid();
	s->ppid = getppid();
	nspid_line(s->nspid, sizeof(s->nspid));
}

/* Its pid, parent and NSpid line as noted; complaints into `why`. */
static void check(const struct self *s)
{
	char now[128];
	if (getpid() != s->pid)
		complain(s, "getpid %ld, was %ld", getpid(), s->pid);
	if (getppid() != s->ppid)
		complain(s, "getppid %ld, was %ld", getppid(), s->ppid);
	nspid_line(now, sizeof(now));
	if (strcmp(now, s->nspid)) {
		size_t n = strlen(why);
		snprintf(why + n, sizeof(why) - n, " %s: '%s', was '%s';", s->name, now,
			 s->nspid);
	}
}

/* C's second thread: its tid and NSpid line, checked once told. */
static volatile int thread_ready, thread_go;
static char thread_why[512];

static void *second(void *arg)
{
	(void)arg;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	char was[128], now[128];
	/* /proc/self is the leader's: the thread's own line. */
	FILE *f = fopen("/proc/thread-self/status", "r");
	char line[256];
	was[0] = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "NSpid:", 6)) {
			snprintf(was, sizeof(was), "%.100s", line);
			break;
		}
	if (f)
		fclose(f);
	__atomic_store_n(&thread_ready, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&thread_go, __ATOMIC_SEQ_CST))
		usleep(1000);
	f = fopen("/proc/thread-self/status", "r");
	now[0] = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "NSpid:", 6)) {
			snprintf(now, sizeof(now), "%.100s", line);
			break;
		}
	if (f)
		fclose(f);
	pid_t tid_now = (pid_t)syscall(SYS_gettid);
	if (tid_now != tid || strcmp(now, was))
		snprintf(thread_why, sizeof(thread_why),
			 " C's thread: tid %d, was %d; '%.60s', was '%.60s';", (int)tid_now,
			 (int)tid, now, was);
	return NULL;
}

static void wait_go(void)
{
	sigset_t none;
	sigemptyset(&none);
	while (!go)
		sigsuspend(&none);
}

/* Passes SIGUSR1 to `child` and waits for it: its complaints come back in
 * a file, its status says whether it ended as it should. */
static void pass_on(const struct self *s, pid_t child, const char *kid)
{
	if (kill(child, SIGUSR1))
		complain(s, "kill of its child %ld: errno %ld", child, errno);
	int st = 0;
	pid_t w = waitpid(child, &st, 0);
	if (w != child)
		complain(s, "waitpid(%ld) gave %ld", child, w);
	else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		complain(s, "its child %ld ended with status %ld", child, st);
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/tmp/why-%s", kid);
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = 0;
			size_t m = strlen(why);
			snprintf(why + m, sizeof(why) - m, "%s", buf);
		}
		close(fd);
	}
}

/* Ends a process that is not R: its complaints to /tmp/why-NAME. */
static void end(const struct self *s)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/why-%s", s->name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, why, strlen(why)) < 0)
			_exit(3);
		close(fd);
	}
	_exit(why[0] ? 1 : 0);
}

static void ns_link(const char *path, char *out, size_t len)
{
	ssize_t n = readlink(path, out, len - 1);
	out[n > 0 ? n : 0] = 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *mode = argc > 2 ? argv[2] : "";
	int shared_group = !strcmp(mode, "shared-group");
	int unshared = !strcmp(mode, "unshared");
	int inner_proc = !strcmp(mode, "inner-proc");
	int zombie = !strcmp(mode, "zombie");
	int own_group = !strcmp(mode, "own-group");
	int hold_pidfd = !strcmp(mode, "pidfd");
	int deep = !strcmp(mode, "deep");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	int ready[2];
	if (pipe(ready))
		return 3;
	struct self me;
	note(&me, "R");
	pid_t a = fork();
	if (a < 0)
		return 3;
	if (a == 0) {
		note(&me, "A");
		if (unshare(CLONE_NEWPID))
			_exit(4);
		pid_t b = 0;
		if (!unshared) {
			b = fork();
			if (b < 0)
				_exit(4);
		}
		if (b == 0 && !unshared) {
			note(&me, "B");
			if (own_group) {
				if (setpgid(0, 0))
					_exit(5);
			} else if (!shared_group && setsid() < 0)
				_exit(5);
			if (inner_proc && (mkdir("/tmp/iproc", 0755) ||
					   mount("proc", "/tmp/iproc", "proc", 0, NULL)))
				_exit(5);
			pid_t c = fork();
			if (c < 0)
				_exit(5);
			if (c == 0) {
				note(&me, "C");
				pthread_t th;
				if (pthread_create(&th, NULL, second, NULL))
					_exit(6);
				while (!__atomic_load_n(&thread_ready, __ATOMIC_SEQ_CST))
					usleep(1000);
				if (hold_pidfd && syscall(SYS_pidfd_open, getpid(), 0) < 0)
					_exit(6);
				pid_t d = 0;
				if (deep) {
					if (unshare(CLONE_NEWPID))
						_exit(6);
					d = fork();
					if (d < 0)
						_exit(6);
					if (d == 0) {
						note(&me, "D");
						close(ready[0]);
						if (write(ready[1], "d", 1) != 1)
							_exit(6);
						close(ready[1]);
						wait_go();
						check(&me);
						if (getpid() != 1)
							complain(&me, "pid %ld, not 1", getpid(), 0);
						end(&me);
					}
				}
				pid_t z = 0;
				if (zombie) {
					z = fork();
					if (z == 0)
						_exit(7);
					siginfo_t si;
					memset(&si, 0, sizeof(si));
					if (z < 0 || waitid(P_PID, z, &si, WEXITED | WNOWAIT))
						_exit(6);
				}
				close(ready[0]);
				if (write(ready[1], "c", 1) != 1)
					_exit(6);
				close(ready[1]);
				wait_go();
				check(&me);
				__atomic_store_n(&thread_go, 1, __ATOMIC_SEQ_CST);
				pthread_join(th, NULL);
				size_t m = strlen(why);
				snprintf(why + m, sizeof(why) - m, "%s", thread_why);
				if (deep)
					pass_on(&me, d, "D");
				if (zombie) {
					int st = 0;
					pid_t w = waitpid(z, &st, WNOHANG);
					if (w != z || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
						complain(&me, "its zombie gave %ld, status %ld", w, st);
				}
				end(&me);
			}
			close(ready[0]);
			if (write(ready[1], "b", 1) != 1)
				_exit(6);
			close(ready[1]);
			wait_go();
			check(&me);
			if (c != 2)
				complain(&me, "its child is %ld, not 2", c, 0);
			if (inner_proc) {
				char self[32] = {0};
				struct stat st;
				if (readlink("/tmp/iproc/self", self, sizeof(self) - 1) < 0 ||
				    strcmp(self, "1") || stat("/tmp/iproc/2", &st))
					complain(&me, "its proc at /tmp/iproc is not its namespace's (self %ld)",
						 atol(self), 0);
			}
			pass_on(&me, c, "C");
			end(&me);
		}
		close(ready[0]);
		char msg[64];
		int n = snprintf(msg, sizeof(msg), "a%d\n", (int)b);
		if (write(ready[1], msg, n) != n)
			_exit(6);
		close(ready[1]);
		wait_go();
		check(&me);
		char own[64], kids[64], theirs[64], path[64];
		ns_link("/proc/self/ns/pid", own, sizeof(own));
		ns_link("/proc/self/ns/pid_for_children", kids, sizeof(kids));
		if (unshared) {
			/* Its next child is the init of a namespace of its own. */
			pid_t d = fork();
			if (d == 0)
				_exit(getpid() == 1 ? 0 : 1);
			int st = 0;
			if (d < 0 || waitpid(d, &st, 0) != d || !WIFEXITED(st) ||
			    WEXITSTATUS(st) != 0)
				complain(&me, "its new child was not pid 1 of a new namespace (status %ld, fork %ld)",
					 st, d);
		} else {
			snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)b);
			ns_link(path, theirs, sizeof(theirs));
			if (!strcmp(own, theirs) || strcmp(kids, theirs)) {
				size_t m = strlen(why);
				snprintf(why + m, sizeof(why) - m,
					 " A: pid %s, for children %s, B's %s;", own, kids, theirs);
			}
			pass_on(&me, b, "B");
		}
		end(&me);
	}
	close(ready[1]);
	/* "b" and "c" from the nested ones, "a<B's pid>\n" from A. */
	char got[64] = {0};
	size_t have = 0;
	while (!(strchr(got, '\n') && (unshared || (strchr(got, 'b') && strchr(got, 'c'))) &&
		 (!deep || strchr(got, 'd')))) {
		ssize_t n = read(ready[0], got + have, sizeof(got) - 1 - have);
		if (n <= 0)
			return 3;
		have += n;
		got[have] = 0;
	}
	close(ready[0]);
	char *at = strchr(got, 'a');
	int b = at ? atoi(at + 1) : 0;
	printf("pids %d %d\nready\n", (int)a, b);
	fflush(stdout);
	wait_go();
	check(&me);
	pass_on(&me, a, "A");
	FILE *out = fopen(argv[1], "w");
	if (!out)
		return 7;
	if (why[0])
		fprintf(out, "FAIL:%s\n", why);
	else
		fprintf(out, "PASS\n");
	fclose(out);
	/* Stays, as a container's init does. */
	for (;;)
		pause();
}
