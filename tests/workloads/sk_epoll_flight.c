/*
 * sk_epoll_flight: an epoll instance in flight in a unix socket (zdtm's
 * scm05):
 *
 *   fds 10/11  a datagram socketpair; 10 sent the epoll instance twice
 *              (two datagrams with SCM_RIGHTS wait in 11)
 *   the epoll instance has fd 11 registered (EPOLLIN, data 0x5eed5), and
 *              no fd of the process holds it: only the messages do
 *
 *   sk_epoll_flight OUTFILE [tree]
 *
 * "tree" forks a child that waits (a dump of two processes). Prints
 * facts, "ready", waits in sigsuspend for SIGUSR1, then receives both
 * messages: each carries an epoll instance reporting fd 11 readable with
 * its data, and both are the same instance (a target deleted through one
 * is gone from the other); writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

static int send_fd(int via, int fd)
{
	char c = 'e';
	struct iovec iov = {.iov_base = &c, .iov_len = 1};
	char ctl[CMSG_SPACE(sizeof(int))];
	memset(ctl, 0, sizeof(ctl));
	struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&h);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(via, &h, 0) == 1 ? 0 : -1;
}

static int recv_fd(int via)
{
	char c;
	struct iovec iov = {.iov_base = &c, .iov_len = 1};
	char ctl[CMSG_SPACE(sizeof(int))];
	struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
	if (recvmsg(via, &h, MSG_DONTWAIT) != 1)
		return -1;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&h);
	if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int)))
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static char msg[128];

static const char *check(void)
{
	int a = recv_fd(11), b = recv_fd(11);
	if (a < 0 || b < 0)
		return "FAIL: the epoll instances in flight\n";
	/* 11 is readable again only if something waits: send one byte. */
	if (send(10, "x", 1, 0) != 1)
		return "FAIL: sending\n";
	struct epoll_event e;
	memset(&e, 0, sizeof(e));
	int n = epoll_wait(a, &e, 1, 0);
	if (n != 1 || !(e.events & EPOLLIN) || e.data.u64 != 0x5eed5) {
		snprintf(msg, sizeof(msg), "FAIL: the first instance reports %d events (data %#llx)\n", n,
			 (unsigned long long)e.data.u64);
		return msg;
	}
	n = epoll_wait(b, &e, 1, 0);
	if (n != 1 || e.data.u64 != 0x5eed5)
		return "FAIL: the second instance\n";
	if (epoll_ctl(a, EPOLL_CTL_DEL, 11, NULL))
		return "FAIL: deleting the target through the first instance\n";
	if (epoll_wait(b, &e, 1, 0) != 0)
		return "FAIL: the two instances are not one\n";
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

	pid_t child = -1;
	if (argc > 2 && !strcmp(argv[2], "tree")) {
		child = fork();
		if (child < 0)
			return 3;
		if (child == 0) {
			for (;;)
				pause();
		}
	}
	int sk[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sk) || dup2(sk[0], 10) != 10 || dup2(sk[1], 11) != 11)
		return 4;
	close(sk[0]);
	close(sk[1]);
	int ep = epoll_create1(0);
	struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0x5eed5};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, 11, &e) || send_fd(10, ep) || send_fd(10, ep) ||
	    close(ep))
		return 4;
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
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	return verdict(argv[1], why ? why : "PASS\n");
}
