/*
 * nl_watch: a NETLINK_ROUTE socket in the group RTMGRP_IPV4_IFADDR, as
 * `ip monitor address` holds one: each IPv4 address added in the
 * process's network namespace is appended to OUTFILE as "new A.B.C.D".
 *
 *   nl_watch OUTFILE
 *
 * Writes "ready" to OUTFILE once its socket is bound, then listens for
 * ever.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void say(int out, const char *s)
{
	if (write(out, s, strlen(s)) < 0)
		_exit(2);
}

int main(int argc, char **argv)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_IPV4_IFADDR };
	char buf[8192], line[64], addr[INET_ADDRSTRLEN];
	int out, sk;

	if (argc != 2)
		return 2;
	out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
	sk = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	if (out < 0 || sk < 0 || bind(sk, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return 1;
	say(out, "ready\n");
	for (;;) {
		ssize_t n = recv(sk, buf, sizeof(buf), 0);
		struct nlmsghdr *h;

		if (n < 0)
			return 1;
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			struct ifaddrmsg *ifa = NLMSG_DATA(h);
			struct rtattr *a;
			int len;

			if (h->nlmsg_type != RTM_NEWADDR || ifa->ifa_family != AF_INET)
				continue;
			len = IFA_PAYLOAD(h);
			for (a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
				if (a->rta_type != IFA_LOCAL)
					continue;
				inet_ntop(AF_INET, RTA_DATA(a), addr, sizeof(addr));
				snprintf(line, sizeof(line), "new %s\n", addr);
				say(out, line);
			}
		}
	}
}
