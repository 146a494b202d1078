// build: -pthread
/*
 * dump_scope: holds one resource the first dump slice does not cover, so
 * that a test can check the dump is refused, naming it, and that the
 * process and its resource are left exactly as they were.
 *
 *   dump_scope OUTFILE MODE
 *
 * MODE: none (nothing beyond the slice: the control), thread, child, pipe,
 * socket, vsock (an AF_VSOCK socket), shm (shared anonymous memory), writable (a regular file open
 * read-write), lock (a file locked with flock), timer (a POSIX timer),
 * userfaultfd (an anonymous inode rcriu does not dump), alarm (a timerfd
 * on an alarm clock, which CRIU's restore does not take), uts (a UTS namespace of its own),
 * pidns (a pid namespace unshared for its children, none forked yet: the
 * check forks one, which must be pid 1 there), pending (a blocked signal
 * pending), numa (an area under a NUMA policy of its own, MPOL_BIND to node
 * 0), numa-thread (the thread's own NUMA policy, MPOL_PREFERRED node 0).
 * Prints "ready"; on SIGUSR1
 * checks the resource still works as before and writes PASS or FAIL.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static int verdict(const char *path, const char *msg)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0)
			return 2;
		close(fd);
	}
	return strcmp(msg, "PASS\n") == 0 ? 0 : 1;
}

static volatile int thread_alive;
static void *spin(void *arg)
{
	(void)arg;
	while (1) {
		thread_alive = 1;
		usleep(1000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	const char *mode = argv[2];
	signal(SIGUSR1, on_usr1);
	int fds[2] = { -1, -1 };
	char *shm = NULL;
	pid_t child = -1;
	timer_t timer;
	pthread_t th;

	if (!strcmp(mode, "none")) {
	} else if (!strcmp(mode, "thread")) {
		/* The thread starts with SIGUSR1 blocked: it is the main
		 * thread's to take. */
		sigset_t s, old;
		sigemptyset(&s);
		sigaddset(&s, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &s, &old);
		if (pthread_create(&th, NULL, spin, NULL))
			return 2;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	} else if (!strcmp(mode, "child")) {
		child = fork();
		if (child == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			while (1)
				pause();
		}
	} else if (!strcmp(mode, "pipe")) {
		if (pipe(fds) || write(fds[1], "through", 7) != 7)
			return 2;
	} else if (!strcmp(mode, "socket")) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) || write(fds[1], "through", 7) != 7)
			return 2;
	} else if (!strcmp(mode, "vsock")) {
		fds[0] = socket(AF_VSOCK, SOCK_STREAM, 0);
		if (fds[0] < 0)
			return 2;
	} else if (!strcmp(mode, "shm")) {
		shm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (shm == MAP_FAILED)
			return 2;
		strcpy(shm, "shared");
	} else if (!strcmp(mode, "writable")) {
		fds[0] = open("writable", O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fds[0] < 0 || write(fds[0], "through", 7) != 7)
			return 2;
	} else if (!strcmp(mode, "lock")) {
		fds[0] = open("locked", O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fds[0] < 0 || flock(fds[0], LOCK_EX))
			return 2;
	} else if (!strcmp(mode, "timer")) {
		struct sigevent sev = { .sigev_notify = SIGEV_NONE };
		struct itimerspec ts = { { 100, 0 }, { 1000, 0 } };
		if (timer_create(CLOCK_MONOTONIC, &sev, &timer) || timer_settime(timer, 0, &ts, NULL))
			return 2;
	} else if (!strcmp(mode, "userfaultfd")) {
		fds[0] = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (fds[0] < 0)
			return 2;
	} else if (!strcmp(mode, "alarm")) {
		struct itimerspec ts = { { 0, 0 }, { 1000, 0 } };
		fds[0] = timerfd_create(CLOCK_BOOTTIME_ALARM, 0);
		if (fds[0] < 0 || timerfd_settime(fds[0], 0, &ts, NULL))
			return 2;
	} else if (!strcmp(mode, "uts")) {
		if (unshare(CLONE_NEWUTS) || sethostname("rcriu-scope", 11))
			return 2;
	} else if (!strcmp(mode, "pidns")) {
		if (unshare(CLONE_NEWPID))
			return 2;
	} else if (!strcmp(mode, "numa")) {
		unsigned long node0 = 1;
		shm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (shm == MAP_FAILED ||
		    syscall(SYS_mbind, shm, 4096, 2 /* MPOL_BIND */, &node0, 8 * sizeof(node0), 0))
			return 2;
		strcpy(shm, "bound");
	} else if (!strcmp(mode, "numa-thread")) {
		unsigned long node0 = 1;
		if (syscall(SYS_set_mempolicy, 1 /* MPOL_PREFERRED */, &node0, 8 * sizeof(node0)))
			return 2;
	} else if (!strcmp(mode, "pending")) {
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, SIGUSR2);
		sigprocmask(SIG_BLOCK, &s, NULL);
		raise(SIGUSR2);
	} else {
		return 2;
	}

	/* SIGUSR1 is taken only inside sigsuspend: a process restored at
	 * the wait (its syscall restarted) cannot miss it between the test
	 * of stop and the wait. */
	sigset_t usr1, waiting;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &waiting);
	sigdelset(&waiting, SIGUSR1);
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	while (!stop)
		sigsuspend(&waiting);

	char buf[16] = "";
	if (!strcmp(mode, "thread")) {
		thread_alive = 0;
		for (int i = 0; i < 10000 && !thread_alive; i++)
			usleep(100);
		if (!thread_alive)
			return verdict(argv[1], "FAIL: the thread stopped\n");
	} else if (!strcmp(mode, "child")) {
		if (waitpid(child, NULL, WNOHANG) != 0)
			return verdict(argv[1], "FAIL: the child is gone\n");
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	} else if (!strcmp(mode, "pipe") || !strcmp(mode, "socket")) {
		if (read(fds[0], buf, 7) != 7 || memcmp(buf, "through", 7))
			return verdict(argv[1], "FAIL: the data is gone\n");
	} else if (!strcmp(mode, "vsock")) {
		int dom = 0;
		socklen_t l = sizeof(dom);
		if (getsockopt(fds[0], SOL_SOCKET, SO_DOMAIN, &dom, &l) || dom != AF_VSOCK)
			return verdict(argv[1], "FAIL: the socket changed\n");
	} else if (!strcmp(mode, "shm")) {
		if (strcmp(shm, "shared"))
			return verdict(argv[1], "FAIL: the shared memory changed\n");
	} else if (!strcmp(mode, "writable")) {
		if (pread(fds[0], buf, 7, 0) != 7 || memcmp(buf, "through", 7) ||
		    lseek(fds[0], 0, SEEK_CUR) != 7)
			return verdict(argv[1], "FAIL: the file changed\n");
	} else if (!strcmp(mode, "lock")) {
		int other = open("locked", O_RDWR);
		if (other < 0 || flock(other, LOCK_EX | LOCK_NB) == 0)
			return verdict(argv[1], "FAIL: the lock is gone\n");
	} else if (!strcmp(mode, "timer")) {
		struct itimerspec cur;
		if (timer_gettime(timer, &cur) || cur.it_interval.tv_sec != 100)
			return verdict(argv[1], "FAIL: the timer changed\n");
	} else if (!strcmp(mode, "userfaultfd")) {
		int fl = fcntl(fds[0], F_GETFL);
		if (fl < 0 || !(fl & O_NONBLOCK))
			return verdict(argv[1], "FAIL: the userfaultfd changed\n");
	} else if (!strcmp(mode, "alarm")) {
		struct itimerspec cur;
		if (timerfd_gettime(fds[0], &cur) || cur.it_value.tv_sec < 900)
			return verdict(argv[1], "FAIL: the alarm timer changed\n");
	} else if (!strcmp(mode, "uts")) {
		struct utsname u;
		if (uname(&u) || strcmp(u.nodename, "rcriu-scope"))
			return verdict(argv[1], "FAIL: the hostname changed\n");
	} else if (!strcmp(mode, "pidns")) {
		pid_t k = fork();
		if (k == 0)
			_exit(getpid() == 1 ? 0 : 1);
		int st = 0;
		if (k < 0 || waitpid(k, &st, 0) != k || !WIFEXITED(st) || WEXITSTATUS(st))
			return verdict(argv[1], "FAIL: its child is not pid 1 of a new pid namespace\n");
	} else if (!strcmp(mode, "numa")) {
		int policy = -1;
		if (syscall(SYS_get_mempolicy, &policy, NULL, 0, shm, 2 /* MPOL_F_ADDR */) ||
		    policy != 2 || strcmp(shm, "bound"))
			return verdict(argv[1], "FAIL: the area's NUMA policy changed\n");
	} else if (!strcmp(mode, "numa-thread")) {
		int policy = -1;
		if (syscall(SYS_get_mempolicy, &policy, NULL, 0, NULL, 0) || policy != 1)
			return verdict(argv[1], "FAIL: the thread's NUMA policy changed\n");
	} else if (!strcmp(mode, "pending")) {
		sigset_t p;
		sigpending(&p);
		if (!sigismember(&p, SIGUSR2))
			return verdict(argv[1], "FAIL: the pending signal is gone\n");
	}
	return verdict(argv[1], "PASS\n");
}
