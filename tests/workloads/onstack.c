// build: -pthread
/*
 * onstack: signal handlers installed with SA_ONSTACK by a thread that has
 * no alternate stack, as Python (and Go, and the JVM) installs every one
 * of them; and a second thread with an alternate stack of its own.
 *
 *   onstack OUTFILE
 *
 * Prints "ready" once both are set up; the main thread waits in
 * sigsuspend, the other in read(2). On SIGUSR1 the main thread checks
 * that it has no alternate stack (sigaltstack says SS_DISABLE), raises
 * SIGUSR2 (SA_ONSTACK) and checks that the handler ran on its own stack;
 * then arms an interval timer whose SIGALRM handler (SA_ONSTACK) must run
 * three times, as Python's signal.setitimer does; then asks the thread to
 * check its own: sigaltstack gives back its stack, and SIGUSR2 raised in
 * it runs on that stack. PASS or the first failure goes to OUTFILE.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define ALTSZ 65536

static volatile sig_atomic_t stop, ticks;
static volatile uintptr_t handler_at;
static char altstack[ALTSZ] __attribute__((aligned(16)));
static int to_thread[2], from_thread[2];
static char thread_result[128];

static void on_usr1(int sig) { (void)sig; stop = 1; }

static void on_usr2(int sig)
{
	volatile char here;
	(void)sig;
	handler_at = (uintptr_t)&here;
}

static void on_alrm(int sig)
{
	volatile char here;
	(void)sig;
	handler_at = (uintptr_t)&here;
	ticks++;
}

static int on(int sig, void (*h)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	return sigaction(sig, &sa, NULL);
}

static int in_altstack(uintptr_t p)
{
	return p >= (uintptr_t)altstack && p < (uintptr_t)altstack + ALTSZ;
}

static void *thread(void *arg)
{
	(void)arg;
	stack_t ss = {.ss_sp = altstack, .ss_size = ALTSZ, .ss_flags = 0};
	char c = 0;
	if (sigaltstack(&ss, NULL) < 0 || write(from_thread[1], &c, 1) != 1)
		return NULL;
	/* Wait for the check. */
	if (read(to_thread[0], &c, 1) != 1)
		return NULL;
	stack_t now;
	if (sigaltstack(NULL, &now) < 0)
		snprintf(thread_result, sizeof(thread_result), "thread: sigaltstack failed");
	else if (now.ss_sp != altstack || now.ss_size != ALTSZ || now.ss_flags != 0)
		snprintf(thread_result, sizeof(thread_result),
			 "thread: its alternate stack is %p+%zu flags %d", now.ss_sp, now.ss_size,
			 now.ss_flags);
	else {
		handler_at = 0;
		pthread_kill(pthread_self(), SIGUSR2);
		if (!in_altstack(handler_at))
			snprintf(thread_result, sizeof(thread_result),
				 "thread: the SA_ONSTACK handler ran at %#lx, off its stack",
				 (unsigned long)handler_at);
		else
			snprintf(thread_result, sizeof(thread_result), "ok");
	}
	c = 1;
	if (write(from_thread[1], &c, 1) != 1)
		return NULL;
	return NULL;
}

static int verdict(const char *path, const char *m)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(m, f);
		fclose(f);
	}
	return strcmp(m, "PASS\n") == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	char msg[256];
	if (argc < 2)
		return 2;
	if (on(SIGUSR2, on_usr2) || on(SIGALRM, on_alrm) || pipe(to_thread) || pipe(from_thread))
		return 2;
	signal(SIGUSR1, on_usr1);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	pthread_t t;
	char c;
	if (pthread_create(&t, NULL, thread, NULL) || read(from_thread[0], &c, 1) != 1)
		return 2;
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	while (!stop)
		sigsuspend(&old);

	volatile char mine;
	stack_t now;
	if (sigaltstack(NULL, &now) < 0)
		return verdict(argv[1], "FAIL: sigaltstack failed\n");
	if (!(now.ss_flags & SS_DISABLE)) {
		snprintf(msg, sizeof(msg), "FAIL: the main thread has an alternate stack %p+%zu\n",
			 now.ss_sp, now.ss_size);
		return verdict(argv[1], msg);
	}
	handler_at = 0;
	raise(SIGUSR2);
	uintptr_t d = handler_at > (uintptr_t)&mine ? handler_at - (uintptr_t)&mine
						    : (uintptr_t)&mine - handler_at;
	if (handler_at == 0 || d > 1 << 20) {
		snprintf(msg, sizeof(msg), "FAIL: SIGUSR2's handler ran at %#lx, off the stack\n",
			 (unsigned long)handler_at);
		return verdict(argv[1], msg);
	}
	struct itimerval it = {{0, 2000}, {0, 2000}};
	if (setitimer(ITIMER_REAL, &it, NULL))
		return verdict(argv[1], "FAIL: setitimer\n");
	while (ticks < 3)
		pause();
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	c = 0;
	if (write(to_thread[1], &c, 1) != 1 || read(from_thread[0], &c, 1) != 1)
		return verdict(argv[1], "FAIL: the thread does not answer\n");
	pthread_join(t, NULL);
	if (strcmp(thread_result, "ok")) {
		snprintf(msg, sizeof(msg), "FAIL: %s\n", thread_result);
		return verdict(argv[1], msg);
	}
	return verdict(argv[1], "PASS\n");
}
