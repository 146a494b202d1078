/*
 * sk_netlink: a process holding netlink sockets:
 *
 *   fd 10  NETLINK_ROUTE bound by the kernel (its port is the pid), in the
 *          groups RTMGRP_LINK and RTMGRP_IPV4_IFADDR, SO_RCVBUF 300000
 *   fd 11  NETLINK_GENERIC bound to port PID+1000
 *   fd 12  NETLINK_ROUTE neither bound nor connected
 *   fd 13  NETLINK_ROUTE connected to the kernel (port 0)
 *   fd 14  NETLINK_KOBJECT_UEVENT in group 1, O_NONBLOCK
 *
 *   sk_netlink OUTFILE
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks the
 * sockets' protocols, ports and groups, asks the kernel for its links
 * through fd 10 and fd 13, and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static char msg[512];

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

static int name_of(int fd, struct sockaddr_nl *a)
{
	socklen_t l = sizeof(*a);
	return getsockname(fd, (struct sockaddr *)a, &l);
}

static int geti(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	getsockopt(fd, level, name, &v, &l);
	return v;
}

/* Asks for the links; true when the kernel answers with at least one. */
static int links(int fd, int sendto_kernel)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = { .h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 7 },
		  .i = { .ifi_family = AF_UNSPEC } };
	struct sockaddr_nl k = { .nl_family = AF_NETLINK };
	ssize_t r = sendto_kernel ? sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&k, sizeof(k)) :
				    send(fd, &req, sizeof(req), 0);
	if (r != sizeof(req))
		return 0;
	char buf[32768];
	int seen = 0;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return 0;
		for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE)
				return seen;
			if (h->nlmsg_type == RTM_NEWLINK && h->nlmsg_seq == 7)
				seen++;
		}
	}
}

static struct sockaddr_nl names[5];

#define FAIL(...) do { snprintf(msg, sizeof(msg), "FAIL: " __VA_ARGS__); return msg; } while (0)

static const char *check(void)
{
	int protos[5] = { NETLINK_ROUTE, NETLINK_GENERIC, NETLINK_ROUTE, NETLINK_ROUTE,
			  NETLINK_KOBJECT_UEVENT };
	for (int i = 0; i < 5; i++) {
		struct sockaddr_nl a;
		if (geti(10 + i, SOL_SOCKET, SO_PROTOCOL) != protos[i])
			FAIL("fd %d's protocol\n", 10 + i);
		if (name_of(10 + i, &a) || a.nl_pid != names[i].nl_pid || a.nl_groups != names[i].nl_groups)
			FAIL("fd %d's port or groups: %u/%#x, want %u/%#x\n", 10 + i, a.nl_pid, a.nl_groups,
			     names[i].nl_pid, names[i].nl_groups);
	}
	if (geti(10, SOL_SOCKET, SO_RCVBUF) != 600000)
		FAIL("fd 10's SO_RCVBUF\n");
	if (!(fcntl(14, F_GETFL) & O_NONBLOCK))
		FAIL("fd 14's flags\n");
	struct sockaddr_nl peer;
	socklen_t pl = sizeof(peer);
	if (getpeername(13, (struct sockaddr *)&peer, &pl) || peer.nl_pid != 0)
		FAIL("fd 13's peer\n");
	if (!links(10, 1) || !links(13, 0))
		FAIL("no link from the kernel\n");
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

	struct sockaddr_nl a = { .nl_family = AF_NETLINK,
				 .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR };
	int buf = 300000;
	if (place(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), 10) < 0 ||
	    bind(10, (struct sockaddr *)&a, sizeof(a)) ||
	    setsockopt(10, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf)))
		return 4;
	struct sockaddr_nl g = { .nl_family = AF_NETLINK, .nl_pid = getpid() + 1000 };
	if (place(socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC), 11) < 0 ||
	    bind(11, (struct sockaddr *)&g, sizeof(g)))
		return 4;
	if (place(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), 12) < 0)
		return 4;
	struct sockaddr_nl k = { .nl_family = AF_NETLINK };
	if (place(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), 13) < 0 ||
	    connect(13, (struct sockaddr *)&k, sizeof(k)))
		return 4;
	struct sockaddr_nl u = { .nl_family = AF_NETLINK, .nl_groups = 1 };
	if (place(socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT), 14) < 0 ||
	    bind(14, (struct sockaddr *)&u, sizeof(u)))
		return 4;
	for (int i = 0; i < 5; i++)
		if (name_of(10 + i, &names[i]))
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
	return verdict(argv[1], why ? why : "PASS\n");
}
