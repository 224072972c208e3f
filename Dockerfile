# netns-lab's container image: Node 24, pnpm and the tools the scenarios use. It carries no
# project files: `pnpm test:container` bind-mounts the working tree (node_modules included).
#
#   pnpm test:container                  builds this image (needs a registry for the base), runs the suite
#   pnpm image:offline                   builds the same image from Debian's packages, no registry needed
#                                        (scripts/build-offline-image.mjs reads PACKAGES below)
#
# The scenarios need CAP_NET_ADMIN, CAP_SYS_ADMIN (ip netns add mounts under /run/netns),
# CAP_NET_RAW (tcpdump) and /dev/net/tun: scripts/test-container.ts starts it with exactly those.
ARG NODE_IMAGE=node:24-bookworm-slim
FROM ${NODE_IMAGE}

# Debian packages the scenarios use (keep on one line: build-offline-image.mjs parses it).
ARG PACKAGES="iproute2 iputils-ping nftables iptables tcpdump conntrack socat curl procps v2ray bpftrace caddy containernetworking-plugins ca-certificates"
ARG PNPM_VERSION=10.34.9

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES} \
 && rm -rf /var/lib/apt/lists/*
RUN npm install -g pnpm@${PNPM_VERSION} && npm cache clean --force

LABEL org.opencontainers.image.title="netns-lab" \
      org.opencontainers.image.description="Tools for netns-lab's scenarios; the project is bind-mounted"
WORKDIR /netns-lab
CMD ["bash"]
