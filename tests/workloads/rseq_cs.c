// build: -pthread
/*
 * rseq_cs: a thread that spends its life inside an rseq critical section
 * (glibc's registration, a descriptor of our own), counting in the
 * section and counting the aborts the kernel sends it to (on preemption,
 * migration or a signal). A dump finds it inside the section.
 *
 *   rseq_cs OUTFILE
 *
 * Prints the section's bounds and abort handler ("cs_start", "cs_end",
 * "cs_abort") before "ready".
 *
 * On SIGUSR1 the main thread signals the spinning thread ten times: each
 * signal must abort the section once more (the registration and the
 * descriptor work), and the counting must go on; then PASS or FAIL goes
 * to OUTFILE.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/rseq.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }
static void on_usr2(int sig) { (void)sig; }

static volatile uint64_t counted, aborts, quit;
static volatile int started;

/* The descriptor: version 0, flags 0, start, post-commit offset, abort. */
extern struct rseq_cs rcriu_cs;
__asm__(".pushsection .data.rel.ro,\"aw\"\n"
	".balign 32\n"
	".globl rcriu_cs\n"
	"rcriu_cs:\n"
	".long 0, 0\n"
	".quad 10f\n"
	".quad 20f - 10f\n"
	".quad 30f\n"
	".popsection\n"
	".pushsection .text\n"
	".globl rcriu_cs_loop\n"
	".type rcriu_cs_loop,@function\n"
	"rcriu_cs_loop:\n"
	/* rdi: &rseq->rseq_cs; each (re)entry points it at the descriptor. */
	"1:\n"
	"	leaq rcriu_cs(%rip), %rax\n"
	"	movq %rax, (%rdi)\n"
	"10:\n"
	"	incq counted(%rip)\n"
	"	cmpq $0, quit(%rip)\n"
	"	je 10b\n"
	"20:\n"
	"	movq $0, (%rdi)\n"
	"	ret\n"
	".long 0x53053053\n"
	"30:\n"
	"	incq aborts(%rip)\n"
	"	jmp 1b\n"
	".size rcriu_cs_loop, . - rcriu_cs_loop\n"
	".popsection\n");
void rcriu_cs_loop(uint64_t *rseq_cs);

static void *spinner(void *arg)
{
	(void)arg;
	struct rseq *r = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	started = 1;
	rcriu_cs_loop((uint64_t *)&r->rseq_cs);
	return NULL;
}

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

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (__rseq_size == 0) {
		printf("rseq 0\nready\n");
		fflush(stdout);
		return verdict(argv[1], "FAIL: glibc did not register rseq\n");
	}
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	sigset_t usr1, waitmask;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	pthread_t t;
	pthread_create(&t, NULL, spinner, NULL);
	while (!started || counted < 1000)
		sched_yield();

	printf("rseq 1\ncs_start %#llx\ncs_end %#llx\ncs_abort %#llx\nready\n",
	       (unsigned long long)rcriu_cs.start_ip,
	       (unsigned long long)(rcriu_cs.start_ip + rcriu_cs.post_commit_offset),
	       (unsigned long long)rcriu_cs.abort_ip);
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	for (int i = 0; i < 10; i++) {
		uint64_t a = aborts, c = counted;
		pthread_kill(t, SIGUSR2);
		/* The signal's delivery aborts the section; bounded wait. */
		for (long spin = 0; aborts == a && spin < 2000000000L; spin++)
			if ((spin & 0xffff) == 0)
				sched_yield();
		if (aborts == a) {
			quit = 1;
			pthread_join(t, NULL);
			return verdict(argv[1], "FAIL: a signal did not abort the critical section\n");
		}
		while (counted == c)
			sched_yield();
	}
	quit = 1;
	pthread_join(t, NULL);
	return verdict(argv[1], "PASS\n");
}
