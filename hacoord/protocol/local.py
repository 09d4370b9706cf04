"""Where a local cluster (``hacoord cluster up``) keeps what its clients on the same host need."""

#: The data directory ``hacoord cluster up`` uses unless told otherwise (``HACOORD_DATA_DIR``).
LOCAL_DATA_DIR = ".hacoord"
DATA_DIR_ENV = "HACOORD_DATA_DIR"
#: The admin token file in that directory (mode 0600).
ADMIN_TOKEN_FILE = "admin.token"
#: The local cluster's certificate authority (the members' HTTPS certificates are signed by it).
CA_FILE = "ca.pem"
