//! The Ansible-style inventory: hosts file, group_vars/, host_vars/ and extra variables.
