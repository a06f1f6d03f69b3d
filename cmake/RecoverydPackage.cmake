# The Debian package of `make deb` (CPack's DEB generator): everything
# `cmake --install` installs (cmake/RecoverydInstall.cmake, api/c), prefix
# /usr, so /etc/recoveryd for the config and policies (conffiles), the unit
# in /usr/lib/systemd/system, the plugins in /usr/lib/<triplet>/recoveryd.
#
# Runtime dependencies come from dpkg-shlibdeps (dpkg-dev) on the binaries:
# libuv1, libh2o0.13, libluajit-5.1-2, ... as Debian names them. libraft is
# not one of them: recoveryd links its patched libraft 0.22.1 statically
# (.deps/libraft, scripts/build-libraft; CMakeLists.txt), with its symbols
# kept local to the binary (--exclude-libs), so the package neither needs
# nor conflicts with Debian's libraft0.
#
# Maintainer scripts (deploy/debian): postinst makes the recoveryd system
# user (adduser) and /var/lib/recoveryd, enables and starts the unit as
# dh_installsystemd does; prerm stops it; postrm keeps the data.
set(CPACK_PACKAGE_NAME recoveryd)
set(CPACK_PACKAGE_VENDOR recoveryd)
set(CPACK_PACKAGE_CONTACT "recoveryd maintainers <recoveryd@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "fault-tolerance and recovery engine for fleets of agents")
set(CPACK_PACKAGE_DESCRIPTION
  "recoveryd detects failed agents from heartbeats, probes and metrics and recovers their
tasks from the newest checkpoint with Lua policies, its state replicated with Raft.
The package holds the daemon, its plugins and policies, the systemd unit, the
plugin header with recoveryd-plugin.pc, and the client library and recoveryctl
when they are built.")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # recoveryd_0.1.0-1_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Beside the libraries dpkg-shlibdeps finds: what the maintainer scripts run,
# and procps for the unit's ExecReload=/bin/kill.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, init-system-helpers (>= 1.52), procps")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.invalid/recoveryd")

# conffiles: the config and the policies under /etc (dpkg keeps an admin's
# edits across upgrades and asks before replacing them).
file(GLOB RD_PKG_POLICIES RELATIVE ${PROJECT_SOURCE_DIR}/policies ${PROJECT_SOURCE_DIR}/policies/*.lua)
set(RD_CONFFILES "/etc/recoveryd/recoveryd.yaml\n")
foreach(f ${RD_PKG_POLICIES})
  string(APPEND RD_CONFFILES "/etc/recoveryd/policies/${f}\n")
endforeach()
file(WRITE ${PROJECT_BINARY_DIR}/debian/conffiles "${RD_CONFFILES}")
foreach(f postinst prerm postrm)
  configure_file(${PROJECT_SOURCE_DIR}/deploy/debian/${f} ${PROJECT_BINARY_DIR}/debian/${f}
    COPYONLY FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
    WORLD_READ WORLD_EXECUTE)
endforeach()
# The client library (api/c) is a shared library in /usr/lib/<triplet>:
# ldconfig runs after the package is unpacked (the trigger; CPack would add
# the call to its own postinst, not to ours), and a shlibs file tells
# dpkg-shlibdeps what a program linked with it depends on.
file(WRITE ${PROJECT_BINARY_DIR}/debian/triggers "activate-noawait ldconfig\n")
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_BINARY_DIR}/debian/conffiles ${PROJECT_BINARY_DIR}/debian/postinst
  ${PROJECT_BINARY_DIR}/debian/prerm ${PROJECT_BINARY_DIR}/debian/postrm
  ${PROJECT_BINARY_DIR}/debian/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
