# `cmake --install` and `cpack -G DEB`: an FHS layout (docs/OPERATIONS.md,
# "Install on Debian"). With CMAKE_INSTALL_PREFIX=/usr (the package):
#   /usr/bin/pushgw
#   /etc/pushgw/pushgw.ini             deploy/pushgw.ini.example, folders
#                                      pointed at /usr/share/pushgw
#   /etc/pushgw/keys/                  mode 700, for LoadCredential=
#   /lib/systemd/system/pushgw.service deploy/pushgw.service, paths adjusted
#   /usr/share/pushgw/{migrations,templates}
#   /usr/share/doc/pushgw/             README, docs, examples (config,
#                                      Grafana dashboard, Prometheus alerts)
# Another prefix (/usr/local by default) moves all of them under it, the
# config to <prefix>/etc/pushgw and the unit to <prefix>/lib/systemd/system.

set(PUSHGW_SYSTEMD_UNITDIR "" CACHE PATH "Folder of pushgw.service \
(empty: /lib/systemd/system for the prefix /usr, else under the prefix)")
if(PUSHGW_SYSTEMD_UNITDIR)
    set(pgw_unitdir ${PUSHGW_SYSTEMD_UNITDIR})
elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(pgw_unitdir /lib/systemd/system)
else()
    set(pgw_unitdir ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()
set(pgw_confdir ${CMAKE_INSTALL_FULL_SYSCONFDIR}/pushgw)
set(pgw_datadir ${CMAKE_INSTALL_FULL_DATADIR}/pushgw)
set(pgw_bin ${CMAKE_INSTALL_FULL_BINDIR}/pushgw)

# replace_checked(VAR FROM TO): a replacement that must happen, so an edit
# of the source file cannot silently leave a repository path installed.
function(pgw_replace_checked var from to)
    string(FIND "${${var}}" "${from}" at)
    if(at EQUAL -1)
        message(FATAL_ERROR "install: '${from}' not found: update cmake/install.cmake")
    endif()
    string(REPLACE "${from}" "${to}" out "${${var}}")
    set(${var} "${out}" PARENT_SCOPE)
endfunction()

set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
    ${CMAKE_SOURCE_DIR}/deploy/pushgw.ini.example
    ${CMAKE_SOURCE_DIR}/deploy/pushgw.service)

file(READ ${CMAKE_SOURCE_DIR}/deploy/pushgw.ini.example pgw_ini)
pgw_replace_checked(pgw_ini "migrations_dir = ../migrations"
    "migrations_dir = ${pgw_datadir}/migrations")
pgw_replace_checked(pgw_ini "dir = ../templates"
    "dir = ${pgw_datadir}/templates")
file(WRITE ${CMAKE_BINARY_DIR}/install/pushgw.ini "${pgw_ini}")

file(READ ${CMAKE_SOURCE_DIR}/deploy/pushgw.service pgw_unit)
pgw_replace_checked(pgw_unit "/usr/bin/pushgw" "${pgw_bin}")
pgw_replace_checked(pgw_unit "/etc/pushgw" "${pgw_confdir}")
pgw_replace_checked(pgw_unit "/usr/share/doc/pushgw"
    "${CMAKE_INSTALL_FULL_DOCDIR}")
file(WRITE ${CMAKE_BINARY_DIR}/install/pushgw.service "${pgw_unit}")
# dpkg keeps an operator's edits of these across upgrades.
file(WRITE ${CMAKE_BINARY_DIR}/install/conffiles "${pgw_confdir}/pushgw.ini\n")

install(TARGETS pushgw RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_BINARY_DIR}/install/pushgw.ini
    DESTINATION ${pgw_confdir}
    PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
install(DIRECTORY DESTINATION ${pgw_confdir}/keys
    DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)
install(FILES ${CMAKE_BINARY_DIR}/install/pushgw.service
    DESTINATION ${pgw_unitdir})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/migrations/
    DESTINATION ${CMAKE_INSTALL_DATADIR}/pushgw/migrations
    FILES_MATCHING PATTERN "*.sql")
install(DIRECTORY ${CMAKE_SOURCE_DIR}/templates/
    DESTINATION ${CMAKE_INSTALL_DATADIR}/pushgw/templates
    FILES_MATCHING PATTERN "*.json")
file(GLOB pgw_docs ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${pgw_docs}
    DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/deploy/pushgw.ini.example
    ${CMAKE_SOURCE_DIR}/deploy/grafana/pushgw.json
    ${CMAKE_SOURCE_DIR}/deploy/prometheus/alerts.yml
    DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# ---- the Debian package: cpack -G DEB in a tree configured with
# -DCMAKE_INSTALL_PREFIX=/usr (other prefixes make a package of them).
set(CPACK_PACKAGE_NAME pushgw)
set(CPACK_PACKAGE_VENDOR pushgw)
set(CPACK_PACKAGE_CONTACT "pushgw maintainers <pushgw@localhost>"
    CACHE STRING "Maintainer field of the Debian package")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "offline-push gateway for an IM broker: APNs and FCM over HTTP/2")
set(CPACK_PACKAGE_DESCRIPTION
    "pushgw receives the receiversOffline events of an instant-messaging\n"
    "broker, stores them durably in PostgreSQL and delivers one\n"
    "notification per device to Apple (APNs) or Google (FCM HTTP v1),\n"
    "with retries, within the validity of a push.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_GENERATOR DEB)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# The libraries' packages come from dpkg-shlibdeps; these are what the
# maintainer scripts call.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, init-system-helpers")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql (>= 13)")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/deploy/debian/postinst
    ${CMAKE_SOURCE_DIR}/deploy/debian/prerm
    ${CMAKE_SOURCE_DIR}/deploy/debian/postrm
    ${CMAKE_BINARY_DIR}/install/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
