//! YAML reading with Ansible's YAML 1.1 rules and line numbers, and YAML writing.
