// build: -pthread
/*
 * task_attrs: a process that sets the attributes of itself and of its
 * threads that CRIU's core image does not carry (docs/state-inventory.md),
 * each to something other than what a new process has.
 *
 *   task_attrs OUTFILE
 *
 * Process: THP disabled except where advised, memory-deny-write-execute,
 * a membarrier registration (private expedited), core dump filter 0x7f,
 * its autogroup's nice 5 (it is a session leader), KSM on every area, a
 * SIGTRAP handler, /proc/self/maps
 * open at position 100, a memfd with a script, writable, that it
 * executes (execveat).
 * Main thread: CPU 0 only, I/O priority best-effort 7, machine-check
 * kill early.
 * Second thread: the last CPU only, I/O priority idle, rdtsc faulting
 * (PR_TSC_SIGSEGV).
 *
 * Prints "ready", waits in sigsuspend for SIGUSR1, then checks every one
 * (the thread its own) and writes PASS, or FAIL: and the names of what is
 * not as it was, to OUTFILE.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#endif
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif
#define THP_EXCEPT_ADVISED (1 << 1)
#define IOPRIO(class, data) (((class) << 13) | (data))

static volatile sig_atomic_t stop, trapped;
static int to_thread[2], from_thread[2];
static int ncpu;
static char failed[1024];
static char thread_failed[256];

static void on_usr1(int sig) { (void)sig; stop = 1; }
static void on_trap(int sig) { (void)sig; trapped = 1; }

static void fail(char *buf, size_t len, const char *what)
{
	size_t n = strlen(buf);
	snprintf(buf + n, len - n, "%s%s", n ? ", " : "", what);
}

static int ioprio_get_self(void) { return syscall(SYS_ioprio_get, 1, 0); }
static int ioprio_set_self(int v) { return syscall(SYS_ioprio_set, 1, 0, v); }

static int only_cpu(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	return sched_setaffinity(0, sizeof(s), &s);
}

static int on_cpu_only(int cpu)
{
	cpu_set_t s;
	if (sched_getaffinity(0, sizeof(s), &s))
		return 0;
	return CPU_COUNT(&s) == 1 && CPU_ISSET(cpu, &s);
}

static void *thread(void *arg)
{
	(void)arg;
	char c = 0;
	if (only_cpu(ncpu - 1) || ioprio_set_self(IOPRIO(3, 0)) ||
	    prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0))
		c = 1;
	if (write(from_thread[1], &c, 1) != 1 || read(to_thread[0], &c, 1) != 1)
		return NULL;
	if (!on_cpu_only(ncpu - 1))
		fail(thread_failed, sizeof(thread_failed), "thread affinity");
	if (ioprio_get_self() != IOPRIO(3, 0))
		fail(thread_failed, sizeof(thread_failed), "thread ioprio");
	int tsc = 0;
	if (prctl(PR_GET_TSC, &tsc, 0, 0, 0) || tsc != PR_TSC_SIGSEGV)
		fail(thread_failed, sizeof(thread_failed), "thread tsc");
	c = 0;
	if (write(from_thread[1], &c, 1) != 1)
		return NULL;
	return NULL;
}

static const char script[] = "#!/bin/true\n";

/* Whether the memfd at fd 21 can be executed (execveat of a child). */
static int memfd_runs(void)
{
	pid_t p = fork();
	if (p == 0) {
		char *argv[] = {"true", NULL}, *envp[] = {NULL};
		syscall(SYS_execveat, 21, "", argv, envp, AT_EMPTY_PATH);
		_exit(99);
	}
	int st;
	return p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	int r = write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1;
	close(fd);
	return r;
}

static void check(void)
{
	char buf[256], want[64];
	if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 3)
		fail(failed, sizeof(failed), "thp");
	if (prctl(PR_GET_MDWE, 0, 0, 0, 0) != 1)
		fail(failed, sizeof(failed), "mdwe");
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
		fail(failed, sizeof(failed), "membarrier");
	if (read_file("/proc/self/coredump_filter", buf, sizeof(buf)) || strtoul(buf, NULL, 16) != 0x7f)
		fail(failed, sizeof(failed), "coredump_filter");
	if (read_file("/proc/self/autogroup", buf, sizeof(buf)) || !strstr(buf, " nice 5"))
		fail(failed, sizeof(failed), "autogroup");
	if (prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) != 1)
		fail(failed, sizeof(failed), "ksm");
	trapped = 0;
	raise(SIGTRAP);
	if (!trapped)
		fail(failed, sizeof(failed), "sigtrap");
	snprintf(want, sizeof(want), "/proc/%d/maps", getpid());
	ssize_t n = readlink("/proc/self/fd/20", buf, sizeof(buf) - 1);
	if (n < 0 || (buf[n] = 0, strcmp(buf, want)) || lseek(20, 0, SEEK_CUR) != 100 ||
	    read(20, buf, 10) != 10)
		fail(failed, sizeof(failed), "maps fd");
	if (!memfd_runs())
		fail(failed, sizeof(failed), "memfd exec");
	if (!on_cpu_only(0))
		fail(failed, sizeof(failed), "affinity");
	if (ioprio_get_self() != IOPRIO(2, 7))
		fail(failed, sizeof(failed), "ioprio");
	if (prctl(PR_MCE_KILL_GET, 0, 0, 0, 0) != PR_MCE_KILL_EARLY)
		fail(failed, sizeof(failed), "mce");
	char c = 0;
	if (write(to_thread[1], &c, 1) != 1 || read(from_thread[0], &c, 1) != 1)
		fail(failed, sizeof(failed), "thread answer");
	else if (thread_failed[0])
		fail(failed, sizeof(failed), thread_failed);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 2) {
		fprintf(stderr, "task_attrs needs two CPUs\n");
		return 2;
	}
	if (pipe(to_thread) || pipe(from_thread))
		return 2;
	int maps = open("/proc/self/maps", O_RDONLY);
	char buf[100];
	if (maps < 0 || read(maps, buf, 100) != 100 || dup2(maps, 20) != 20)
		return 4;
	close(maps);
	int m = memfd_create("script", 0);
	if (m < 0 || write(m, script, sizeof(script) - 1) != sizeof(script) - 1 || dup2(m, 21) != 21)
		return 5;
	close(m);
	if (!memfd_runs())
		return 6;
	signal(SIGTRAP, on_trap);
	if (prctl(PR_SET_THP_DISABLE, 1, THP_EXCEPT_ADVISED, 0, 0) ||
	    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) ||
	    write_file("/proc/self/coredump_filter", "0x7f") || write_file("/proc/self/autogroup", "5") ||
	    prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) || only_cpu(0) || ioprio_set_self(IOPRIO(2, 7)) ||
	    prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0))
		return 7;
	/* SIGUSR1 blocked before the thread exists: only the main thread
	 * takes it, in sigsuspend. */
	signal(SIGUSR1, on_usr1);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	pthread_t t;
	char c;
	if (pthread_create(&t, NULL, thread, NULL) || read(from_thread[0], &c, 1) != 1 || c)
		return 8;
	/* Last: no executable mapping may be made after it (a thread's
	 * stack is not one). */
	if (prctl(PR_SET_MDWE, 1, 0, 0, 0))
		return 9;

	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	while (!stop)
		sigsuspend(&old);
	check();
	pthread_join(t, NULL);
	FILE *f = fopen(argv[1], "w");
	if (!f)
		return 2;
	if (failed[0])
		fprintf(f, "FAIL: %s\n", failed);
	else
		fprintf(f, "PASS\n");
	fclose(f);
	return failed[0] ? 1 : 0;
}
