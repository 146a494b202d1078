// build: -pthread
/*
 * dead_leader: the main thread exits (pthread_exit) while another thread
 * lives on, leaving a zombie thread-group leader with a live thread.
 *
 *   dead_leader OUTFILE
 *
 * The surviving thread prints "ready" once the leader is gone, then waits
 * for SIGUSR1 and writes PASS.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static pthread_t main_thread;
static const char *out;

static void *survivor(void *arg)
{
	(void)arg;
	pthread_join(main_thread, NULL);
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	int sig;
	sigwait(&s, &sig);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, "PASS\n", 5) != 5)
			_exit(2);
		close(fd);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	out = argv[1];
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	main_thread = pthread_self();
	pthread_t t;
	pthread_create(&t, NULL, survivor, NULL);
	pthread_exit(NULL);
}
