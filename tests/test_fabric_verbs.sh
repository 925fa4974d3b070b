#!/bin/sh
# The fabric tests on the verbs provider (RDMA NICs, soft-RoCE): the same
# code as on tcp and shm with another provider name. Skipped (exit 77, a
# visible skip) where no RDMA device is present, as on the CI machines.
here=$(dirname "$0")
if ! command -v fi_info >/dev/null 2>&1; then
	echo "SKIP: fi_info (libfabric-bin) is not installed"
	exit 77
fi
if ! fi_info -p verbs -t FI_EP_RDM -c FI_RMA >/dev/null 2>&1; then
	echo "SKIP: no RDMA device: the verbs provider is not tested here"
	exit 77
fi
BWT_FABRIC_PROVIDERS=verbs exec "$here/test_fabric"
